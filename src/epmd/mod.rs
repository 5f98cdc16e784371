//! EPMD: the client this node uses to register and to find peers, and an
//! EPMD-compatible server started inside the process when none runs.

pub mod server;
pub mod wire;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use wire::NodeEntry;

/// Errors talking to EPMD.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EpmdError {
    /// Could not reach EPMD, or the connection failed.
    #[error("epmd io: {0}")]
    Io(#[from] std::io::Error),
    /// EPMD answered with something that is not EPMD protocol.
    #[error("malformed epmd message: {0}")]
    Malformed(&'static str),
    /// EPMD refused the registration (name taken), with its result code.
    #[error("epmd refused the registration (result {0}); is the name already in use?")]
    Refused(u8),
    /// EPMD did not answer in time.
    #[error("epmd did not answer in time")]
    Timeout,
}

const TIMEOUT: Duration = Duration::from_secs(5);

async fn with_timeout<T>(
    f: impl std::future::Future<Output = Result<T, EpmdError>>,
) -> Result<T, EpmdError> {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .map_err(|_| EpmdError::Timeout)?
}

/// An EPMD registration: the node stays registered while this lives.
#[derive(Debug)]
pub struct Registration {
    stream: TcpStream,
    /// The creation EPMD handed out.
    pub creation: u32,
}

impl Registration {
    /// Waits until EPMD closes the registration's connection (it was
    /// stopped or restarted, and forgot the node). EPMD sends nothing after
    /// its ALIVE2 answer, so anything read is discarded.
    pub async fn closed(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            match self.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Registers `entry` with the EPMD at `host:port`.
pub async fn register(host: &str, port: u16, entry: NodeEntry) -> Result<Registration, EpmdError> {
    with_timeout(async {
        let mut s = crate::resolve::connect(host, port).await?;
        s.set_nodelay(true)?;
        s.write_all(&wire::Request::Alive2(entry).encode()).await?;
        let mut buf = Vec::with_capacity(8);
        loop {
            let mut chunk = [0u8; 8];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(EpmdError::Malformed("epmd closed during ALIVE2"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(creation) = wire::decode_alive2_resp(&buf)? {
                return Ok(Registration {
                    stream: s,
                    creation,
                });
            }
        }
    })
    .await
}

async fn one_shot(host: &str, port: u16, req: wire::Request) -> Result<Vec<u8>, EpmdError> {
    with_timeout(async {
        let mut s = crate::resolve::connect(host, port).await?;
        s.write_all(&req.encode()).await?;
        let mut buf = Vec::new();
        s.take(64 * 1024).read_to_end(&mut buf).await?;
        Ok(buf)
    })
    .await
}

/// Asks the EPMD at `host:port` where node `alive` listens.
pub async fn port_please(
    host: &str,
    port: u16,
    alive: &str,
) -> Result<Option<NodeEntry>, EpmdError> {
    let b = one_shot(host, port, wire::Request::PortPlease2(alive.to_string())).await?;
    wire::decode_port2_resp(&b)
}

/// Lists the names registered at `host:port`.
pub async fn names(host: &str, port: u16) -> Result<Vec<(String, u16)>, EpmdError> {
    let b = one_shot(host, port, wire::Request::Names).await?;
    wire::decode_names_resp(&b)
}

/// Where no EPMD answers on `port` (loopback), runs `epmd -port PORT
/// -daemon`, as `erl` starts one, and waits (at most 3 s) until it answers:
/// it outlives this process, so the nodes that register with it stay
/// findable when this one stops. Whether an EPMD answers in the end;
/// false, quietly, where `epmd` cannot be run (Erlang not installed).
pub async fn start_daemon(port: u16) -> bool {
    if names("127.0.0.1", port).await.is_ok() {
        return true;
    }
    let started = tokio::process::Command::new("epmd")
        .args(["-port", &port.to_string(), "-daemon"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    match started {
        Ok(s) if s.success() => {}
        Ok(s) => {
            tracing::info!("epmd -daemon on port {port} failed ({s})");
            return false;
        }
        Err(e) => {
            tracing::info!("cannot run epmd ({e})");
            return false;
        }
    }
    for _ in 0..150 {
        if names("127.0.0.1", port).await.is_ok() {
            tracing::info!("started epmd -daemon on port {port}");
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::warn!("epmd -daemon on port {port} does not answer");
    false
}

/// `ERL_EPMD_PORT` holds no port number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERL_EPMD_PORT is not a port number (1 to 65535): {0:?}")]
pub struct BadEpmdPort(pub String);

/// The EPMD port from `ERL_EPMD_PORT`, else 4369. A value that is no port
/// number is an error, as `erl` refuses to start its distribution then
/// (not a silent 4369, which would register with another EPMD).
pub fn port_from_env() -> Result<u16, BadEpmdPort> {
    match std::env::var("ERL_EPMD_PORT") {
        Ok(p) => match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(BadEpmdPort(p)),
        },
        Err(std::env::VarError::NotPresent) => Ok(4369),
        Err(std::env::VarError::NotUnicode(p)) => Err(BadEpmdPort(p.to_string_lossy().into())),
    }
}
