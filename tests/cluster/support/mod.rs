//! Test support: real `erl` nodes behind a drop guard, an embedded EPMD per
//! test, unique names and random cookies, and rpc into the erl side.

pub mod cpg;
pub mod schedule;

use cpg_node::config::{Cookie, NodeConfig, NodeName};
use cpg_node::epmd::server::EpmdServer;
use cpg_node::node::{DownReason, NodeEvent};
use cpg_node::term::{self, Term};
use cpg_node::Node;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Whether `erl` can run here. In CI a missing `erl` is a failure, not a skip.
pub fn erl_available() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    let have = *HAVE.get_or_init(|| {
        Command::new("erl")
            .args(["-noshell", "-eval", "halt()."])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "erl is missing in CI: scripts/test.sh installs it"
        );
        eprintln!(
            "SKIPPED: erl is not installed; run scripts/test.sh to install it and run these tests"
        );
    }
    have
}

/// Skips the test (returning early) when erl is missing outside CI.
#[macro_export]
macro_rules! require_erl {
    () => {
        if !$crate::support::erl_available() {
            return;
        }
    };
}

/// erl_test/*.erl compiled once into this run's cargo scratch folder
/// (`CARGO_TARGET_TMPDIR`, inside whatever target folder cargo uses).
pub fn ebin() -> PathBuf {
    static EBIN: OnceLock<PathBuf> = OnceLock::new();
    EBIN.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("erl_test_ebin");
        std::fs::create_dir_all(&out).unwrap();
        let srcs: Vec<PathBuf> = std::fs::read_dir(root.join("erl_test"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "erl"))
            .collect();
        let st = Command::new("erlc")
            .arg("-o")
            .arg(&out)
            .args(&srcs)
            .status()
            .expect("erlc");
        assert!(st.success(), "erlc of erl_test failed");
        out
    })
    .clone()
}

/// A unique node-name prefix for this test run.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u16>()
    )
}

/// A random cookie.
pub fn cookie() -> String {
    format!("c{:016x}", rand::random::<u64>())
}

/// This machine's short host name, as `erl -sname` uses it.
pub fn host() -> String {
    cpg_node::config::local_host(false)
}

/// The config of a node named `<unique prefix>@<this host>` with `cookie`,
/// using the EPMD on `epmd_port` (the other settings as `NodeConfig::new`
/// gives them: an embedded EPMD allowed).
pub fn node_config(prefix: &str, cookie: &str, epmd_port: u16) -> NodeConfig {
    let name = NodeName::parse(&format!("{}@{}", unique(prefix), host())).unwrap();
    let mut c = NodeConfig::new(name, Cookie::new(cookie.to_string()));
    c.epmd_port = epmd_port;
    c
}

/// One test's world: its own EPMD on a free port and a cookie.
pub struct World {
    pub epmd: EpmdServer,
    pub cookie: String,
}

impl World {
    pub async fn new() -> World {
        World {
            epmd: EpmdServer::start("127.0.0.1", 0).await.unwrap(),
            cookie: cookie(),
        }
    }

    pub fn config(&self, prefix: &str) -> NodeConfig {
        let mut c = node_config(prefix, &self.cookie, self.epmd.port);
        c.embedded_epmd = false;
        c
    }

    pub async fn rust_node(&self, prefix: &str) -> Node {
        Node::start(self.config(prefix)).await.unwrap()
    }

    pub async fn erl(&self, prefix: &str) -> ErlNode {
        ErlNode::start(&unique(prefix), &self.cookie, self.epmd.port, &[]).await
    }

    /// An `erl -hidden` node, as a remote shell is, connected to `to`
    /// (its `net_adm:ping`, driven from `ctl`).
    pub async fn hidden_shell(&self, ctl: &Node, to: &str) -> ErlNode {
        let shell = ErlNode::start(&unique("sh"), &self.cookie, self.epmd.port, &["-hidden"]).await;
        ping(ctl, &shell.name, to).await;
        shell
    }
}

/// A real erl node, killed (by pid) when dropped.
pub struct ErlNode {
    child: Option<Child>,
    pub alive: String,
    pub name: String,
    pub cookie: String,
    pub epmd_port: u16,
    pub extra: Vec<String>,
    /// `-name` (long names) instead of `-sname`.
    pub long: bool,
}

impl ErlNode {
    pub async fn start(alive: &str, cookie: &str, epmd_port: u16, extra: &[&str]) -> ErlNode {
        let mut n = ErlNode {
            child: None,
            alive: alive.to_string(),
            name: format!("{alive}@{}", host()),
            cookie: cookie.to_string(),
            epmd_port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            long: false,
        };
        n.boot().await;
        n
    }

    /// A node with a long name, `alive@127.0.0.1`.
    pub async fn start_long(alive: &str, cookie: &str, epmd_port: u16) -> ErlNode {
        ErlNode::start_long_at(alive, "127.0.0.1", cookie, epmd_port, &[]).await
    }

    /// A node of an IPv6 cluster: `erl -proto_dist inet6_tcp -name
    /// alive@::1` (it registers with EPMD, and finds other nodes' EPMD and
    /// ports, over IPv6 only).
    pub async fn start_inet6(alive: &str, cookie: &str, epmd_port: u16) -> ErlNode {
        let extra = ["-proto_dist", "inet6_tcp"];
        ErlNode::start_long_at(alive, "::1", cookie, epmd_port, &extra).await
    }

    async fn start_long_at(
        alive: &str,
        host: &str,
        cookie: &str,
        epmd_port: u16,
        extra: &[&str],
    ) -> ErlNode {
        let mut n = ErlNode {
            child: None,
            alive: alive.to_string(),
            name: format!("{alive}@{host}"),
            cookie: cookie.to_string(),
            epmd_port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            long: true,
        };
        n.boot().await;
        n
    }

    async fn boot(&mut self) {
        let child = Command::new("erl")
            .args([
                if self.long { "-name" } else { "-sname" },
                if self.long { &self.name } else { &self.alive },
                "-setcookie",
                &self.cookie,
                "-noshell",
                "-noinput",
            ])
            .arg("-pa")
            .arg(ebin())
            .args(&self.extra)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn erl");
        self.child = Some(child);
        // EPMD-less (`-erl_epmd_port P`): ready once P takes connections;
        // one that does not listen (`-dist_listen false`) is not waited for.
        let flag = |f: &str| {
            let at = self.extra.iter().position(|a| a == f)?;
            self.extra.get(at + 1).cloned()
        };
        if let Some(p) = flag("-erl_epmd_port") {
            if flag("-dist_listen").as_deref() == Some("false") {
                return;
            }
            for _ in 0..200 {
                if tokio::net::TcpStream::connect(("127.0.0.1", p.parse::<u16>().unwrap()))
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("erl node {} did not listen on {p}", self.name);
        }
        for _ in 0..200 {
            if let Ok(Some(_)) =
                cpg_node::epmd::port_please("127.0.0.1", self.epmd_port, &self.alive).await
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("erl node {} did not register with epmd", self.name);
    }

    /// The OS pid of the erl process.
    pub fn os_pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Kills the OS process (SIGKILL, by pid).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts it again under the same name (a new creation).
    pub async fn restart(&mut self) {
        self.kill();
        // Wait for EPMD to drop the old entry.
        for _ in 0..100 {
            if let Ok(None) =
                cpg_node::epmd::port_please("127.0.0.1", self.epmd_port, &self.alive).await
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.boot().await;
    }
}

impl Drop for ErlNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `from` pings `to` (`net_adm:ping`, driven from `ctl` through rex),
/// asserting `pong`: two erl nodes joined, or an erl node connected to
/// a Rust node.
pub async fn ping(ctl: &Node, from: &str, to: &str) {
    let pinged = eval(ctl, from, &format!("net_adm:ping('{to}').")).await;
    assert!(is_atom(&pinged, "pong"), "{from} pinging {to}: {pinged:?}");
}

/// Waits up to `within` for the [`NodeEvent::Down`] of `node` on
/// `events`: its reason, or `None` when none came (or the node stopped).
pub async fn down_of(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    node: &str,
    within: Duration,
) -> Option<DownReason> {
    use tokio::sync::broadcast::error::RecvError;
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { node: n, reason }) if n == node => return Some(reason),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Evaluates Erlang code on `erl` (through rex) and returns the value.
pub async fn eval(node: &Node, erl: &str, code: &str) -> Term {
    eval_with(node, erl, code, &[]).await
}

/// [`eval`] with variables bound first (`("P", pid)`: `P` in `code`).
pub async fn eval_with(node: &Node, erl: &str, code: &str, bindings: &[(&str, Term)]) -> Term {
    let bindings = bindings
        .iter()
        .map(|(name, value)| term::tuple(vec![term::atom(name), value.clone()]))
        .collect();
    node.rpc(
        erl,
        "cpg_node_test_util",
        "eval",
        vec![term::string_to_charlist(code), term::list(bindings)],
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|e| panic!("rpc eval on {erl} failed: {e}: {code}"))
}

/// Calls `M:F(Args)` on `erl` through rex.
pub async fn rpc(node: &Node, erl: &str, m: &str, f: &str, args: Vec<Term>) -> Term {
    node.rpc(erl, m, f, args, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("rpc {m}:{f} on {erl} failed: {e}"))
}

/// Retries `f` until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of a term as Erlang would print it, with atoms unquoted where
/// eetf quotes them, for readable assertions.
/// Sends `signal` (`-STOP`, `-CONT`, ...) to the OS process `pid` with
/// `kill`, by pid.
pub fn sig(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {signal} {pid}");
}

pub fn show(t: &Term) -> String {
    t.to_string()
}

pub fn is_atom(t: &Term, a: &str) -> bool {
    term::as_atom(t) == Some(a)
}

/// `erl` arguments that start genuine cpg with `node_type` and more cpg
/// application settings (`-cpg Key Value`, e.g. `("group_storage",
/// "dict")`), from the ebin folders in `CPG_EBIN`. Fails the test when
/// CPG_EBIN is unset: such tests are `#[ignore]`d and run only with
/// `--include-ignored`, which `scripts/test.sh` passes when CPG_EBIN is set.
pub fn genuine_cpg_args_env(node_type: &str, env: &[(&str, &str)]) -> Vec<String> {
    let ebin = std::env::var_os("CPG_EBIN").expect(
        "this test needs genuine cpg: set CPG_EBIN to the ebin folders of cpg, trie and quickrand",
    );
    let mut v = Vec::new();
    for d in std::env::split_paths(&ebin) {
        v.push("-pa".to_string());
        v.push(d.display().to_string());
    }
    v.extend(["-cpg", "node_type", node_type].map(String::from));
    for (key, value) in env {
        v.extend(["-cpg", key, value].map(String::from));
    }
    v.extend(["-eval", "{ok, _} = application:ensure_all_started(cpg)."].map(String::from));
    v
}

/// Polls (up to 5 s) what the erl recorder process `recorder` (see
/// `cpg_node_test_util`) has received until its printed text contains every
/// one of `needles`.
pub async fn recorded_eventually(
    node: &Node,
    erl: &str,
    recorder: &Term,
    needles: &[&str],
) -> bool {
    eventually(5, || async {
        let got = rpc(
            node,
            erl,
            "cpg_node_test_util",
            "recorded_pid",
            vec![recorder.clone()],
        )
        .await;
        let text = show(&got);
        needles.iter().all(|n| text.contains(n))
    })
    .await
}

/// Elixir's ebin folder, when `elixir` runs here (`None` skips: in CI a
/// missing elixir is a failure, not a skip).
pub fn elixir_ebin() -> Option<String> {
    static EBIN: OnceLock<Option<String>> = OnceLock::new();
    let got = EBIN
        .get_or_init(|| {
            let out = Command::new("elixir")
                .args(["-e", "IO.puts(:code.lib_dir(:elixir))"])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !dir.is_empty()).then(|| format!("{dir}/ebin"))
        })
        .clone();
    if got.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "elixir is missing in CI: scripts/test.sh installs it"
        );
        eprintln!(
            "SKIPPED: elixir is not installed; run scripts/test.sh to install it and run the Phoenix.PubSub tests"
        );
    }
    got
}
