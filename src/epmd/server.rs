//! An EPMD-compatible server, run inside the node when no EPMD answers, so
//! that a Rust-only cluster (and the demo) needs nothing else. It serves
//! ALIVE2 (the entry lives as long as the registering connection),
//! PORT_PLEASE2 and NAMES, which is what `erl` and this crate use.

use super::wire::{self, NodeEntry, Request};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Table = Arc<parking_lot::Mutex<HashMap<String, NodeEntry>>>;

/// A running embedded EPMD; it stops when dropped.
#[derive(Debug)]
pub struct EpmdServer {
    task: tokio::task::JoinHandle<()>,
    /// The port it listens on.
    pub port: u16,
}

impl Drop for EpmdServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EpmdServer {
    /// Binds `addr:port` (port 0 picks one) and serves until dropped.
    pub async fn start(addr: &str, port: u16) -> std::io::Result<EpmdServer> {
        let listener = TcpListener::bind((addr, port)).await?;
        let port = listener.local_addr()?.port();
        let table: Table = Arc::default();
        let task = tokio::spawn(async move {
            let mut creation: u32 = rand::random::<u32>() | 0x10;
            loop {
                let (sock, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("embedded epmd accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                creation = creation.wrapping_add(1).max(4);
                let table = table.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(sock, table, creation, port).await {
                        tracing::debug!("embedded epmd: client {peer}: {e}");
                    }
                });
            }
        });
        Ok(EpmdServer { task, port })
    }
}

async fn serve(
    mut sock: TcpStream,
    table: Table,
    creation: u32,
    port: u16,
) -> Result<(), super::EpmdError> {
    let mut buf = Vec::with_capacity(64);
    let req = loop {
        let mut chunk = [0u8; 256];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((req, _)) = Request::decode(&buf)? {
            break req;
        }
    };
    match req {
        Request::Alive2(entry) => {
            let name = entry.name.clone();
            let taken = {
                let mut t = table.lock();
                if t.contains_key(&name) {
                    true
                } else {
                    t.insert(name.clone(), entry);
                    false
                }
            };
            if taken {
                sock.write_all(&wire::encode_alive2_resp(1, 0)).await?;
                return Ok(());
            }
            tracing::debug!("embedded epmd: registered {name}");
            sock.write_all(&wire::encode_alive2_resp(0, creation))
                .await?;
            // The entry lives as long as this connection.
            let mut sink = [0u8; 64];
            while let Ok(n) = sock.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
            table.lock().remove(&name);
            tracing::debug!("embedded epmd: unregistered {name}");
        }
        Request::PortPlease2(name) => {
            let e = table.lock().get(&name).cloned();
            sock.write_all(&wire::encode_port2_resp(e.as_ref())).await?;
        }
        Request::Names => {
            let names: Vec<(String, u16)> = table
                .lock()
                .values()
                .map(|e| (e.name.clone(), e.port))
                .collect();
            sock.write_all(&wire::encode_names_resp(port, &names))
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn register_lookup_unregister() {
        let srv = EpmdServer::start("127.0.0.1", 0).await.unwrap();
        let reg = crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("t1", 5555))
            .await
            .unwrap();
        assert!(reg.creation >= 4);
        // A second registration of the same name is refused.
        assert!(matches!(
            crate::epmd::register("127.0.0.1", srv.port, NodeEntry::hidden("t1", 1)).await,
            Err(crate::epmd::EpmdError::Refused(_))
        ));
        let e = crate::epmd::port_please("127.0.0.1", srv.port, "t1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.port, 5555);
        assert_eq!(
            crate::epmd::names("127.0.0.1", srv.port).await.unwrap(),
            vec![("t1".to_string(), 5555)]
        );
        drop(reg);
        for _ in 0..100 {
            if crate::epmd::port_please("127.0.0.1", srv.port, "t1")
                .await
                .unwrap()
                .is_none()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("entry not removed after the registering connection closed");
    }
}
