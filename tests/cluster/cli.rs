//! The `cpg-node` binary's cpg commands against a running node, and what
//! it tells a user who got something wrong.

use crate::support::{unique, World};
use cpg_node::cpg::{CpgScope, ScopeOptions, DEFAULT_SCOPE};
use cpg_node::term::{atom, pid_text, tuple};
use serde_json::{json, Value};
use std::path::Path;

/// Runs `cpg-node` with the world's cookie and EPMD; (exit code, JSON lines).
pub(crate) async fn cli(w: &World, args: &[&str]) -> (i32, Vec<Value>) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
        .args(["--name", &unique("cli"), "--cookie", &w.cookie])
        .args(args)
        .env("ERL_EPMD_PORT", w.epmd.port.to_string())
        .output()
        .await
        .expect("run cpg-node");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[tokio::test]
async fn members_and_groups_as_json() {
    let w = World::new().await;
    let a = w.rust_node("a").await;
    let scope = CpgScope::start(&a, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let p1 = a.spawn_process();
    let p2 = a.spawn_process();
    scope
        .join_counts(&[("g".into(), 2)], p1.pid())
        .await
        .unwrap();
    scope.join("a/*", p2.pid()).await.unwrap();
    let (t1, t2) = (pid_text(p1.pid()), pid_text(p2.pid()));
    let target = a.name();

    let (code, g) = cli(&w, &["members", "g", "--connect", target, "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0]["group"], "g");
    assert_eq!(g[0]["pids"], json!([t1, t1]));
    assert_eq!(g[0]["remote"], json!([t1, t1]));

    let (code, ax) = cli(&w, &["members", "a/x", "--connect", target, "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(ax[0]["pattern"], "a/*");
    assert_eq!(ax[0]["pids"], json!([t2]));

    let (code, groups) = cli(&w, &["groups", "--connect", target, "--json"]).await;
    assert_eq!(code, 0);
    let names: Vec<&str> = groups
        .iter()
        .map(|r| r["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a/*", "g"]);

    let (code, none) = cli(&w, &["members", "nope", "--connect", target, "--json"]).await;
    assert_eq!(code, 1);
    assert_eq!(none.len(), 1, "{none:?}");
    assert_eq!(none[0]["kind"], "no_such_group");
    assert!(none[0]["error"].as_str().unwrap().contains("\"nope\""));
}

/// Runs `cpg-node` with exactly `args` (no name or cookie added), with the
/// world's EPMD and `HOME` (when given); (exit code, stdout, stderr).
async fn cli_raw(w: &World, args: &[&str], home: Option<&Path>) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"));
    cmd.args(args)
        .env("ERL_EPMD_PORT", w.epmd.port.to_string())
        .env_remove("CPG_NODE_COOKIE")
        .env_remove("RUST_LOG")
        // User errors print one line whatever the backtrace setting.
        .env("RUST_BACKTRACE", "1");
    if let Some(h) = home {
        cmd.env("HOME", h).env_remove("XDG_CONFIG_HOME");
    }
    let out = cmd.output().await.expect("run cpg-node");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends `signal` to `child` and waits (at most 20 s) for it to end: its
/// exit status (`what` names the wait in a failure).
async fn signal_and_wait(
    child: &mut tokio::process::Child,
    signal: i32,
    what: &str,
) -> std::process::ExitStatus {
    // SAFETY: kill(2) with a pid and a signal number.
    assert_eq!(unsafe { libc::kill(child.id().unwrap() as i32, signal) }, 0);
    tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect(what)
        .unwrap()
}

/// [`cli_raw`] with a name of its own and the world's cookie.
async fn cli_text(w: &World, args: &[&str]) -> (i32, String, String) {
    let name = unique("cli");
    let mut all = vec!["--name", &name, "--cookie", &w.cookie];
    all.extend_from_slice(args);
    cli_raw(w, &all, None).await
}

/// One JSON error object on stdout; returns (kind, message).
fn json_error(stdout: &str) -> (String, String) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    (
        v["kind"].as_str().unwrap().to_string(),
        v["error"].as_str().unwrap().to_string(),
    )
}

/// A one-line `error: ...` on stderr and nothing else (no log line, no
/// backtrace).
fn one_error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0]
}

/// A scope that no node asked runs (a misspelt name, a node without pg) is
/// said on stderr, where it used to read as an empty scope; a scope that
/// runs is not, on a Rust node or a BEAM one.
#[tokio::test]
async fn a_scope_no_node_runs_is_said() {
    crate::require_erl!();
    let w = World::new().await;
    let a = w.rust_node("a").await;
    let _scope = CpgScope::start(&a, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    cpg_node::status::Status::new(&a).serve().unwrap();
    let e = w.erl("e").await;
    let name = unique("cli");
    let run = |extra: &[&str]| {
        let mut args = vec!["--name", name.as_str(), "--cookie", w.cookie.as_str()];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let w = &w;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli_raw(w, &args, None).await
        }
    };
    let warned = |stderr: &str, kind: &str, scope: &str| {
        stderr.lines().any(|l| {
            l.starts_with(&format!(
                "warning: no node asked runs {kind} scope {scope} "
            ))
        })
    };
    // cpg: the Rust node runs the default scope only.
    let (code, _, err) = run(&["groups", "--connect", a.name()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    let (code, _, err) = run(&["groups", "--scope", "nosuch", "--connect", a.name()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(warned(&err, "cpg", "nosuch"), "{err}");
    assert!(err.contains(a.name()), "the nodes asked are named: {err}");
    let (code, _, err) = run(&["members", "g", "--scope", "nosuch", "--connect", a.name()]).await;
    assert_eq!(code, 1, "{err}");
    assert!(warned(&err, "cpg", "nosuch"), "{err}");
    assert!(err.contains("error: no group \"g\""), "{err}");
    // pg: the erl node has none until pg:start(pg).
    let (code, _, err) = run(&["pg-groups", "--connect", &e.name]).await;
    assert_eq!(code, 0, "{err}");
    assert!(warned(&err, "pg", "pg"), "{err}");
    crate::support::eval(&a, &e.name, "{ok, _} = pg:start(pg), ok.").await;
    let (code, _, err) = run(&["pg-groups", "--connect", &e.name]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");

    // `run` says it in its log, once its seeds are reached, for a scope
    // no seed runs (a misspelt `--scope`), and not for one they run.
    let said = |seed: &str, args: &'static [&'static str], want: &'static str| {
        let (w, a) = (&w, seed.to_string());
        async move {
            use tokio::io::AsyncBufReadExt;
            let mut all = args.to_vec();
            all.extend(["--connect", &a]);
            let mut node =
                RunningNode::start_with(w.epmd.port, &w.cookie, &all, std::process::Stdio::piped())
                    .await;
            let err = node.child.stderr.take().unwrap();
            let mut lines = tokio::io::BufReader::new(err).lines();
            let seen = async {
                while let Ok(Some(l)) = lines.next_line().await {
                    if l.contains("no seed runs") {
                        return Some(l);
                    }
                }
                None
            };
            let seen = tokio::time::timeout(std::time::Duration::from_secs(5), seen)
                .await
                .ok()
                .flatten();
            assert!(
                match want {
                    "" => seen.is_none(),
                    want => seen.as_deref().is_some_and(|l| l.contains(want)),
                },
                "{args:?}: {seen:?}"
            );
        }
    };
    said(
        a.name(),
        &["--scope", "nosuch"],
        "no seed runs cpg scope nosuch",
    )
    .await;
    said(a.name(), &[], "").await;
    // A node run for OTP pg only: the default cpg scope, neither named nor
    // joined, is not warned about (a seed without cpg).
    said(
        &e.name,
        &["--pg-scope", "nosuchpg"],
        "no seed runs pg scope nosuchpg",
    )
    .await;
    said(
        &e.name,
        &["--join", "g"],
        "no seed runs cpg scope cpg_default_scope",
    )
    .await;

    // A RUST_LOG that is no filter is said, not silently dropped.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
        .args(["--help"])
        .env("RUST_LOG", "bogus[[")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "--help parses no filter: {err}");
    // `ping` with RUST_LOG `filter`: its exit code and stderr.
    let ping_logging = |filter: &'static str| {
        let (w, a) = (&w, a.name().to_string());
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
                .args(["--cookie", &w.cookie, "ping", &a])
                .env("ERL_EPMD_PORT", w.epmd.port.to_string())
                .env("RUST_LOG", filter)
                .output()
                .await
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            (out.status.code(), err)
        }
    };
    let (code, err) = ping_logging("bogus[[").await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.starts_with("warning: RUST_LOG=\"bogus[[\" is not a log filter"),
        "{err}"
    );
    // One that names the binary, not its log targets, is said too.
    let (_, err) = ping_logging("cpg-node=debug").await;
    assert!(err.contains("the log targets are cpg_node"), "{err}");
}

#[tokio::test]
async fn user_mistakes_read_as_one_clear_line_or_a_json_object() {
    let w = World::new().await;
    let a = w.rust_node("a").await;
    let _scope = CpgScope::start(&a, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    // As `run` does: without it, a query through `a` warns that only `a` is
    // asked (it has no rex to tell its peers).
    cpg_node::status::Status::new(&a).serve().unwrap();
    let target = a.name().to_string();
    let name = unique("cli");
    let base = ["--name", name.as_str(), "--cookie", w.cookie.as_str()];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>| {
        let w = &w;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli_raw(w, &args, None).await
        }
    };

    // An unknown group.
    let (code, out, err) = run(with(&["members", "nosuch", "--connect", &target])).await;
    assert_eq!((code, out.as_str()), (1, ""));
    let line = one_error_line(&err);
    assert!(line.contains("no group \"nosuch\""), "{line}");
    assert!(!line.contains("NoSuchGroup"), "{line}");

    // A bad group name, before connecting anywhere.
    let (code, out, _) = run(with(&["members", "a**", "--connect", &target, "--json"])).await;
    assert_eq!(code, 1);
    let (kind, msg) = json_error(&out);
    assert_eq!(kind, "bad_group_name");
    assert!(msg.contains("two wildcards"), "{msg}");

    // A node that is not there.
    let nobody = format!("nobody@{}", crate::support::host());
    let (code, _, err) = run(with(&["members", "g", "--connect", &nobody])).await;
    assert_eq!(code, 1);
    let line = one_error_line(&err);
    assert!(line.contains("no node nobody in EPMD"), "{line}");
    assert!(
        !line.contains("cannot reach the peer: cannot reach"),
        "{line}"
    );

    // A wrong cookie: the peer closes the handshake after our reply.
    let bad = ["--name", name.as_str(), "--cookie", "not_the_cookie"];
    let args = |extra: &[&str]| -> Vec<String> {
        bad.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let (code, out, _) = run(args(&["members", "g", "--connect", &target, "--json"])).await;
    assert_eq!(code, 1);
    let (kind, msg) = json_error(&out);
    assert_eq!(kind, "wrong_cookie", "{msg}");
    assert!(msg.contains("wrong cookie"), "{msg}");
    let (code, out, err) = run(args(&["ping", &target])).await;
    assert_eq!((code, out.trim()), (1, "pang"));
    assert!(one_error_line(&err).contains("wrong cookie"), "{err}");

    // An empty cookie and a net_ticktime erl would not run with (0, or
    // one its ticker's timer cannot wait a quarter of) are refused (exit
    // 2); the largest erl takes is taken.
    let (code, _, err) = cli_raw(&w, &["--cookie", "", "ping", &target], None).await;
    assert_eq!(code, 2);
    assert!(one_error_line(&err).contains("cookie is empty"), "{err}");
    for bad in ["0", "17179870", "18446744073709551615"] {
        let (code, _, err) = run(with(&["--net-ticktime", bad, "ping", &target])).await;
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(one_error_line(&err).contains("net-ticktime"), "{err}");
    }
    let (code, out, err) = run(with(&["--net-ticktime", "17179869", "ping", &target])).await;
    assert_eq!((code, out.trim()), (0, "pong"), "{err}");
    let (code, _, err) = run(with(&["--dist-port-range", "9200-9100", "ping", &target])).await;
    assert_eq!(code, 2);
    assert!(err.contains("bad port range"), "{err}");

    // A usage error clap finds is JSON too under --json.
    let (code, out, _) = cli_raw(&w, &["members", "g", "--json"], None).await;
    assert_eq!(code, 2);
    let (kind, msg) = json_error(&out);
    assert_eq!(kind, "usage");
    assert!(msg.contains("--connect"), "{msg}");

    // A long name from a short-name cluster.
    let long = format!("{}@127.0.0.1", unique("l"));
    let (code, out, _) = cli_raw(
        &w,
        &[
            "-name",
            &long,
            "-setcookie",
            &w.cookie,
            "members",
            "g",
            "--connect",
            &target,
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(json_error(&out).0, "mixed_names");
    // `run` with a seed of the other kind does not start (it retried the
    // seed for ever, a node that looked healthy and never joined).
    let (code, _, err) = cli_raw(
        &w,
        &[
            "-name",
            &long,
            "-setcookie",
            &w.cookie,
            "run",
            "--connect",
            &target,
        ],
        None,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        one_error_line(&err).contains("Erlang never connects"),
        "{err}"
    );
}

/// A one-shot command where no EPMD answers runs no EPMD of its own (a
/// node starting meanwhile could register with it and lose it when the
/// command exits): `ping` says pang, and why: nothing answers on the port.
#[tokio::test]
async fn a_one_shot_command_runs_no_epmd() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
        .args([
            "--cookie",
            "c",
            "ping",
            &format!("ghost@{}", crate::support::host()),
        ])
        .env("ERL_EPMD_PORT", port.to_string())
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run cpg-node");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!((out.status.code(), stdout.trim()), (Some(1), "pang"));
    // Its own EPMD would have answered (the name is not registered).
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

/// Stops the EPMD on `port` when dropped (`epmd -kill`: it refuses while
/// nodes are registered, so drop it after them).
struct KillEpmd(u16);

impl Drop for KillEpmd {
    fn drop(&mut self) {
        let epmd = |arg: &str| {
            std::process::Command::new("epmd")
                .args(["-port", &self.0.to_string(), arg])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        // Until it answers no more: the nodes just stopped may still be
        // registered for a moment.
        for _ in 0..100 {
            epmd("-kill");
            if !epmd("-names") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A free port for an EPMD of the test's own, and what kills the EPMD
/// that `run` starts there when the test ends.
fn epmd_port_of_its_own() -> (u16, KillEpmd) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (port, KillEpmd(port))
}

/// `cpg-node run` where no EPMD answers starts `epmd -daemon`, as `erl`
/// does: when the node is killed, an erl node that registered with that
/// EPMD meanwhile is still found by name (with the EPMD inside the killed
/// process, it was gone with it).
#[tokio::test]
async fn run_starts_an_epmd_daemon_that_outlives_it() {
    crate::require_erl!();
    let (port, _kill_epmd) = epmd_port_of_its_own();
    let cookie = crate::support::cookie();
    let mut run = RunningNode::start_on(port, &cookie, &[]).await;
    let e = crate::support::ErlNode::start(&unique("e"), &cookie, port, &[]).await;
    run.child.kill().await.unwrap();
    let ping = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
        .args(["--cookie", &cookie, "ping", &e.name])
        .env("ERL_EPMD_PORT", port.to_string())
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ping.stdout).trim(),
        "pong",
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
}

/// The pid of the `epmd -port PORT -daemon` process, found by its command
/// line.
fn epmd_daemon_pid(port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|d| {
        let pid: u32 = d.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(d.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        let is_epmd = args.first()?.ends_with(b"epmd");
        let on_port = args
            .windows(2)
            .any(|w| w[0] == b"-port" && w[1] == port.as_bytes());
        (is_epmd && on_port && args.contains(&&b"-daemon"[..])).then_some(pid)
    })
}

/// `cpg-node run` whose EPMD goes away (killed, then started again by
/// someone a moment later, or not) starts `epmd -daemon` again, as at
/// start, not an EPMD inside its own process: the nodes that register with
/// it again stay findable once `run` has stopped.
#[tokio::test]
async fn run_whose_epmd_goes_away_starts_the_daemon_again() {
    crate::require_erl!();
    let (port, _kill_epmd) = epmd_port_of_its_own();
    let cookie = crate::support::cookie();
    let mut run = RunningNode::start_on(port, &cookie, &[]).await;
    let first = epmd_daemon_pid(port).expect("run started epmd -daemon");
    let kill = std::process::Command::new("kill")
        .arg(first.to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let alive = run.name.split('@').next().unwrap().to_string();
    let registered = crate::support::eventually(10, || {
        let alive = alive.clone();
        async move {
            cpg_node::epmd::names("127.0.0.1", port)
                .await
                .is_ok_and(|n| n.iter().any(|(name, _)| *name == alive))
        }
    })
    .await;
    assert!(registered, "run registered again");
    let second = epmd_daemon_pid(port).expect("an epmd -daemon answers again");
    assert_ne!(second, first);
    run.child.kill().await.unwrap();
    run.child.wait().await.unwrap();
    assert!(
        cpg_node::epmd::names("127.0.0.1", port).await.is_ok(),
        "the EPMD outlived run"
    );
}

#[tokio::test]
async fn erlang_style_flags_are_accepted() {
    let w = World::new().await;
    let a = w.rust_node("a").await;
    let sname = unique("s");
    let (code, out, err) = cli_raw(
        &w,
        &["-sname", &sname, "-setcookie", &w.cookie, "ping", a.name()],
        None,
    )
    .await;
    assert_eq!((code, out.trim()), (0, "pong"), "{err}");
    assert_eq!(err, "", "a one-shot command logs warnings only");
}

#[cfg(unix)]
#[tokio::test]
async fn a_missing_cookie_file_is_created_as_erl_does_and_an_open_one_refused() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new().await;
    let a = w.rust_node("a").await;
    let home = std::env::temp_dir().join(unique("home"));
    std::fs::create_dir_all(&home).unwrap();
    let file = home.join(".erlang.cookie");
    let name = unique("c");
    let args = ["--name", name.as_str(), "ping", a.name()];

    let (code, out, err) = cli_raw(&w, &args, Some(&home)).await;
    // The new cookie is not the cluster's: pang, and the user is told.
    assert_eq!((code, out.trim()), (1, "pang"));
    assert!(err.contains("created it with a new random cookie"), "{err}");
    let cookie = std::fs::read_to_string(&file).unwrap();
    assert_eq!(cookie.len(), 20);
    assert!(cookie.bytes().all(|b| b.is_ascii_uppercase()), "{cookie}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);

    // The cluster's cookie in an owner-only file: pong.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&file, &w.cookie).unwrap();
    let (code, out, err) = cli_raw(&w, &args, Some(&home)).await;
    assert_eq!((code, out.trim()), (0, "pong"), "{err}");

    // Readable by others: refused, as erl refuses it.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = cli_raw(&w, &args, Some(&home)).await;
    assert_eq!(code, 1);
    assert!(
        one_error_line(&err).contains("must be accessible by owner only"),
        "{err}"
    );

    // None in HOME, the cluster's in the XDG folder (as OTP 24+ reads it):
    // pong, and none created in HOME (erl would then read that one).
    std::fs::remove_file(&file).unwrap();
    let xdg = home.join(".config/erlang/.erlang.cookie");
    std::fs::create_dir_all(xdg.parent().unwrap()).unwrap();
    std::fs::write(&xdg, &w.cookie).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o400)).unwrap();
    let (code, out, err) = cli_raw(&w, &args, Some(&home)).await;
    assert_eq!((code, out.trim()), (0, "pong"), "{err}");
    assert!(
        !file.exists(),
        "a cookie created in HOME beside the XDG one"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// A query through a cpg-node seed (which has no `rex` to list its peers)
/// sees the members of the nodes that seed is connected to: it reads them
/// from the status the seed serves. A seed serving neither is said to be
/// the only node asked.
#[tokio::test]
async fn a_query_through_a_cpg_node_seed_sees_the_nodes_beyond_it() {
    let w = World::new().await;
    let seed = RunningNode::start(&w, &[]).await;
    let b = w.rust_node("b").await;
    let scope = CpgScope::start(&b, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    b.connect(&seed.name).await.unwrap();
    let member = b.spawn_process();
    scope.join("beyond", member.pid()).await.unwrap();
    let (code, rows) = cli(
        &w,
        &["members", "beyond", "--connect", &seed.name, "--json"],
    )
    .await;
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["pids"], json!([pid_text(member.pid())]), "{rows:?}");
    // A library node serving no status: only it is asked, and that is said.
    let c = w.rust_node("c").await;
    let _c_scope = CpgScope::start(&c, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    c.connect(b.name()).await.unwrap();
    let (code, _, err) = cli_text(&w, &["groups", "--connect", c.name()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "warning: cannot learn the nodes {} is connected to",
            c.name()
        )),
        "{err}"
    );
}

/// Discovery through a cpg-node seed (which has no `rex`): the node learns
/// the seed's visible peers from the seed's status, as it learns a BEAM
/// seed's `erlang:nodes()`, and connects to them. Of the seed's hidden
/// peers, another Rust node (registered with EPMD as no `erl`: it may hold
/// members read only from it) is connected to as well, and an `erl
/// -hidden` node (a remote shell) is left alone.
#[tokio::test]
async fn discovery_through_a_cpg_node_seed_finds_its_visible_peers() {
    use cpg_node::node::cluster::{Cluster, ClusterOptions};
    crate::require_erl!();
    let w = World::new().await;
    let e = w.erl("e").await;
    let seed = RunningNode::start(&w, &["--connect", &e.name]).await;
    let hidden = w.rust_node("h").await;
    hidden.connect(&seed.name).await.unwrap();
    let shell = w.hidden_shell(&hidden, &seed.name).await;
    let r = w.rust_node("r").await;
    let mut opts = ClusterOptions::new(vec![seed.name.clone()]);
    opts.discover_interval = std::time::Duration::from_millis(200);
    let _cluster = Cluster::start(&r, opts);
    for (what, name) in [
        ("BEAM peer", e.name.clone()),
        ("hidden Rust peer", hidden.name().to_string()),
    ] {
        assert!(
            crate::support::eventually(10, || {
                let (r, name) = (r.clone(), name.clone());
                async move { r.peers().contains(&name) }
            })
            .await,
            "the seed's {what} not found: {:?}",
            r.peers()
        );
    }
    // The remote shell is not taken for a cluster node.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(!r.peers().contains(&shell.name), "{:?}", r.peers());
}

/// `cpg-node run` as a child process (killed when dropped), with the
/// world's cookie and EPMD; returns once it says it is running.
struct RunningNode {
    child: tokio::process::Child,
    name: String,
}

impl RunningNode {
    async fn start(w: &World, args: &[&str]) -> RunningNode {
        RunningNode::start_on(w.epmd.port, &w.cookie, args).await
    }

    /// `cpg-node run` with EPMD port `epmd` (whatever answers there, if
    /// anything) and `cookie`.
    async fn start_on(epmd: u16, cookie: &str, args: &[&str]) -> RunningNode {
        RunningNode::start_with(epmd, cookie, args, std::process::Stdio::null()).await
    }

    /// [`RunningNode::start_on`], its log (stderr) to `stderr`.
    async fn start_with(
        epmd: u16,
        cookie: &str,
        args: &[&str],
        stderr: std::process::Stdio,
    ) -> RunningNode {
        use tokio::io::AsyncBufReadExt;
        let alive = unique("run");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
            .args(["--sname", &alive, "--cookie", cookie, "run"])
            .args(args)
            .env("ERL_EPMD_PORT", epmd.to_string())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("run cpg-node");
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), out.next_line())
            .await
            .expect("cpg-node run starts")
            .unwrap()
            .unwrap_or_default();
        assert!(line.contains("running"), "{line}");
        RunningNode {
            child,
            name: format!("{alive}@{}", crate::support::host()),
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A peer's flood of messages a scope cannot read is logged 10 times at
/// most in its second, and once it is over, one more line tells how many
/// were not logged (before, that count waited for the next refusal): for
/// the cpg scope and for an OTP pg scope.
#[tokio::test]
async fn a_flood_of_refused_messages_is_counted_once_it_is_over() {
    use cpg_node::term;
    use tokio::io::AsyncBufReadExt;
    let w = World::new().await;
    let args = ["--pg-scope", "pg"];
    let stderr = std::process::Stdio::piped();
    let mut run = RunningNode::start_with(w.epmd.port, &w.cookie, &args, stderr).await;
    let mut log = tokio::io::BufReader::new(run.child.stderr.take().unwrap()).lines();
    let peer = w.rust_node("flood").await;
    let p = peer.spawn_process();
    let scopes = [cpg_node::cpg::DEFAULT_SCOPE, "pg"];
    for scope in scopes {
        let to = cpg_node::process::Dest::Name(scope.into(), run.name.clone());
        for i in 0..50 {
            let junk = term::tuple(vec![term::atom("junk"), term::int(i)]);
            p.send(to.clone(), junk).unwrap();
        }
    }
    // Per scope: the lines of the flood, and the line that told the rest.
    let mut seen: [(usize, Option<String>); 2] = Default::default();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(6), async {
        while let Ok(Some(line)) = log.next_line().await {
            let Some(k) = scopes
                .iter()
                .position(|s| line.contains(&format!("scope={s} ")))
            else {
                continue;
            };
            if line.contains("were not logged") {
                seen[k].1 = Some(line);
            } else if line.contains("dropped") {
                seen[k].0 += 1;
            }
            if seen.iter().all(|(_, told)| told.is_some()) {
                break;
            }
        }
    })
    .await;
    for (scope, (dropped, told)) in scopes.iter().zip(seen) {
        assert!(dropped <= 10, "{scope}: {dropped} lines for one flood");
        let told = told.unwrap_or_else(|| panic!("{scope}: the flood's count not told"));
        let rest = format!("held_back={}", 50 - dropped);
        assert!(told.contains(&rest), "{scope}: {told} ({dropped} logged)");
    }
    peer.shutdown().await;
}

/// `run` signalled (SIGTERM, SIGINT) as soon as it says it is running shuts
/// down and exits 0: it listens for the signals before it says so (a
/// listener set up later left a window in which the signal killed it).
/// `run` whose log reader went away (a log shipper's pipe that closed)
/// goes on serving: a failed log write made a task panic, and the node,
/// up and registered, could be connected to no more (`pang`).
#[tokio::test]
async fn run_goes_on_when_its_log_reader_is_gone() {
    crate::require_erl!();
    let w = World::new().await;
    let mut n =
        RunningNode::start_with(w.epmd.port, &w.cookie, &[], std::process::Stdio::piped()).await;
    drop(n.child.stderr.take());
    let p = w.rust_node("p").await;
    for round in 0..3 {
        // Each connection is logged (nodeup, nodedown): into the void.
        assert!(p.ping(&n.name).await, "round {round}: pang");
        p.disconnect(&n.name);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = signal_and_wait(&mut n.child, libc::SIGTERM, "run ends on the signal").await;
    assert_eq!(status.code(), Some(0), "{status:?}");
    p.shutdown().await;
}

/// SIGTERM while `run` still makes its first dials of its seeds (one whose
/// EPMD accepts and answers nothing: the dial waits out net_setuptime)
/// stops it cleanly; the signal's default action killed it (exit 143).
#[tokio::test]
async fn run_stopped_while_it_first_dials_its_seeds_exits_cleanly() {
    let w = World::new().await;
    // The seed's host: an EPMD port that takes connections and says nothing.
    let _mute = tokio::net::TcpListener::bind(("127.0.0.2", w.epmd.port))
        .await
        .unwrap();
    let alive = unique("early");
    let name = format!("{alive}@127.0.0.1");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
        .args(["--name", &name, "--cookie", &w.cookie, "run"])
        .args([
            "--connect",
            "silent@127.0.0.2",
            "--discover-interval-ms",
            "0",
        ])
        .env("ERL_EPMD_PORT", w.epmd.port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Registered with EPMD: started, and dialling the seed.
    let registered = crate::support::eventually(10, || async {
        matches!(
            cpg_node::epmd::port_please("127.0.0.1", w.epmd.port, &alive).await,
            Ok(Some(_))
        )
    })
    .await;
    assert!(registered);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = signal_and_wait(&mut child, libc::SIGTERM, "run ends on the signal").await;
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test]
async fn run_stopped_by_a_signal_right_after_it_says_running_exits_cleanly() {
    let w = World::new().await;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut n = RunningNode::start(&w, &[]).await;
        let status = signal_and_wait(&mut n.child, signal, "run ends on the signal").await;
        assert_eq!(status.code(), Some(0), "signal {signal}: {status:?}");
    }
}

#[tokio::test]
async fn status_of_a_running_node_from_the_cli_and_from_an_erl_shell() {
    use cpg_node::status::NodeStatus;
    let w = World::new().await;
    let e = w.erl("e").await;
    let run = RunningNode::start(
        &w,
        &["--connect", &e.name, "--join", "svc", "--join", "svc"],
    )
    .await;
    let ctl = w.rust_node("ctl").await;
    ctl.connect(&e.name).await.unwrap();

    // The seed is connected and has talked to the node, and the scope
    // knows how the seed's cpg runs (`all`: it has none loaded).
    let has_talked = |v: &[Value]| {
        v.first().is_some_and(|s| {
            s["peers"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["node"] == e.name.as_str() && p["msgs_in"].as_u64() > Some(0))
            }) && s["scopes"][0]["node_types"][e.name.as_str()] == "all"
        })
    };
    let mut last = Vec::new();
    for _ in 0..40 {
        let (code, v) = cli(&w, &["status", &run.name, "--json"]).await;
        last = v;
        if code == 0 && has_talked(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(has_talked(&last), "{last:?}");
    let st = &last[0];
    assert_eq!(st["node"], run.name.as_str());
    assert!(st["uptime_ms"].as_u64().unwrap() > 0);
    assert!(st["processes"].as_u64().unwrap() >= 4, "{st}");
    let peer = st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == e.name.as_str())
        .unwrap();
    assert_eq!(peer["direction"], "out", "a seed is dialled by the node");
    for k in [
        "msgs_out",
        "bytes_in",
        "bytes_out",
        "connected_ms",
        "last_heard_ms",
    ] {
        assert!(peer[k].is_u64(), "{k}: {peer}");
    }
    assert!(peer["bytes_in"].as_u64() > Some(0), "{peer}");
    let mut scopes = st["scopes"].clone();
    // (Other peers, such as this status query's own node, come and go.)
    scopes[0]["node_types"].take();
    assert_eq!(
        scopes,
        json!([{"scope": DEFAULT_SCOPE, "groups": 1, "members": 2, "local_members": 2, "pids": 1,
                "node_types": null}])
    );
    let seed = st["cluster"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["node"] == e.name.as_str())
        .unwrap();
    assert_eq!(
        (&seed["origin"], &seed["connected"]),
        (&json!("seed"), &json!(true))
    );

    // The text form.
    let name = unique("cli");
    let args = ["--name", &name, "--cookie", &w.cookie, "status", &run.name];
    let (code, out, err) = cli_raw(&w, &args, None).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("node {} (creation ", run.name)),
        "{out}"
    );
    let seed_type = format!("{} (all)", e.name);
    for s in [
        "peers:",
        e.name.as_str(),
        "SCOPE",
        DEFAULT_SCOPE,
        "seed",
        "NODE TYPES",
        &seed_type,
    ] {
        assert!(out.contains(s), "{s}: {out}");
    }

    // From an erl shell: gen_server:call({cpg_node_status, Node}, status).
    let code = format!(
        "gen_server:call({{cpg_node_status, '{}'}}, status).",
        run.name
    );
    let reply = crate::support::eval(&ctl, &e.name, &code).await;
    let st = NodeStatus::from_term(&reply).unwrap_or_else(|err| panic!("{err}: {reply}"));
    assert_eq!(st.node, run.name);
    assert!(st.peers.iter().any(|p| p.node == e.name), "{st:?}");
    assert_eq!(st.scopes[0].members, 2);
    assert!(
        st.scopes[0]
            .node_types
            .contains(&(e.name.clone(), "all".to_string())),
        "{st:?}"
    );
    let code = format!(
        "gen_server:call({{cpg_node_status, '{}'}}, other).",
        run.name
    );
    let reply = crate::support::eval(&ctl, &e.name, &code).await;
    let unknown = tuple(vec![
        atom("error"),
        tuple(vec![atom("unknown_call"), atom("other")]),
    ]);
    assert_eq!(reply, unknown);
    // There is no rex on the Rust node: rpc:call answers {badrpc, _}
    // ({badrpc, notsup} from OTP 25: erpc needs the spawn feature), at once.
    let code = format!("rpc:call('{}', erlang, node, [], 5000).", run.name);
    let reply = crate::support::eval(&ctl, &e.name, &code).await;
    assert!(
        matches!(cpg_node::term::as_tuple(&reply), Some([b, _]) if crate::support::is_atom(b, "badrpc")),
        "{reply}"
    );

    // A BEAM node has no status process: a clear error.
    let (code, v) = cli(&w, &["status", &e.name, "--json"]).await;
    assert_eq!(code, 1);
    assert_eq!(v[0]["kind"], "no_status", "{v:?}");
    assert!(v[0]["error"].as_str().unwrap().contains("cpg_node_status"));
    ctl.shutdown().await;
}

type Lines<R> = tokio::io::Lines<tokio::io::BufReader<R>>;

/// `cpg-node watch --json` through `seed`, asking for new nodes every
/// 200 ms: the child and its stdout and stderr lines.
fn spawn_watch(
    w: &World,
    seed: &str,
) -> (
    tokio::process::Child,
    Lines<tokio::process::ChildStdout>,
    Lines<tokio::process::ChildStderr>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
        .args(["--name", &unique("watch"), "--cookie", &w.cookie, "watch"])
        .args(["--connect", seed, "--json", "--discover-interval-ms", "200"])
        .env("ERL_EPMD_PORT", w.epmd.port.to_string())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run cpg-node watch");
    let out = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let err = tokio::io::BufReader::new(watch.stderr.take().unwrap()).lines();
    (watch, out, err)
}

#[tokio::test]
async fn watch_prints_the_groups_first_then_follows_nodes_that_come_later() {
    let w = World::new().await;
    let e = w.erl("e").await;
    let _a = RunningNode::start(&w, &["--connect", &e.name, "--join", "early"]).await;
    let (mut watch, mut out, mut err) = spawn_watch(&w, &e.name);
    let secs = std::time::Duration::from_secs(20);
    let next = |l: Option<String>| -> Value { serde_json::from_str(&l.unwrap()).unwrap() };
    // The current groups first.
    let first = next(
        tokio::time::timeout(secs, out.next_line())
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(
        (&first["group"], first["pids"].as_array().unwrap().len()),
        (&json!("early"), 1)
    );
    // What it watches, on stderr.
    let said = tokio::time::timeout(secs, err.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        said.contains("watching scope cpg_default_scope on"),
        "{said}"
    );
    assert!(said.contains(&e.name), "{said}");
    // A node that starts later (found through the seed) is followed.
    let _b = RunningNode::start(&w, &["--connect", &e.name, "--join", "late"]).await;
    let event = next(
        tokio::time::timeout(secs, out.next_line())
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(event["group"], "late", "{event}");
    assert_eq!(event["event"], "join_remote", "{event}");
    let _ = watch.start_kill();
}

/// `watch` keeps following after a burst of more events than the scope's
/// stream keeps (one cast of 30,000 joins): a forwarder that fell behind
/// says so and prints the groups again, then goes on (it stopped for good
/// before, and a later join was never printed).
#[tokio::test]
async fn watch_goes_on_after_a_burst_it_fell_behind() {
    let w = World::new().await;
    let a = w.rust_node("a").await;
    let scope = CpgScope::start(&a, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let p = a.spawn_process();
    scope.join("before", p.pid()).await.unwrap();
    let (mut watch, mut out, mut err) = spawn_watch(&w, a.name());
    let secs = std::time::Duration::from_secs(30);
    let first = tokio::time::timeout(secs, out.next_line()).await.unwrap();
    assert!(first.unwrap().unwrap().contains("before"));
    let counts: Vec<(String, usize)> = (0..30_000).map(|i| (format!("b{i:05}"), 1)).collect();
    scope.join_counts(&counts, p.pid()).await.unwrap();
    scope.join("after_burst", p.pid()).await.unwrap();
    let found = tokio::time::timeout(secs, async {
        while let Some(l) = out.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&l).unwrap();
            if v["group"] == "after_burst" && v["event"] == "join_remote" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the join after the burst was not printed");
    let _ = watch.start_kill();
    // What it said, if it fell behind.
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(std::time::Duration::from_millis(200), err.next_line()).await
    {
        if l.contains("fell behind") {
            assert!(l.contains("its groups now"), "{l}");
        }
    }
}

/// `watch` through a cpg-node seed (no `rex`) follows the nodes that
/// connect to that seed later: it learns them from the seed's status.
#[tokio::test]
async fn watch_through_a_cpg_node_seed_follows_nodes_that_come_later() {
    let w = World::new().await;
    let seed = RunningNode::start(&w, &[]).await;
    let (mut watch, mut out, mut err) = spawn_watch(&w, &seed.name);
    let secs = std::time::Duration::from_secs(20);
    let said = tokio::time::timeout(secs, err.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(said.contains("watching scope"), "{said}");
    let _b = RunningNode::start(&w, &["--connect", &seed.name, "--join", "late"]).await;
    let line = tokio::time::timeout(secs, out.next_line())
        .await
        .expect("the join beyond the seed is seen")
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["group"], "late", "{event}");
    assert_eq!(event["event"], "join_remote", "{event}");
    let _ = watch.start_kill();
}

/// `cpg-node demo` (the README's main command) with what it finds: its
/// stdout, once it has stopped with success (asserted here).
async fn demo(w: &World, path: Option<&str>) -> String {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"));
    cmd.arg("demo")
        .env("ERL_EPMD_PORT", w.epmd.port.to_string())
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the demo ends within a minute")
        .expect("run cpg-node demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The README's main command on a machine with Erlang: the demo starts a
/// real erl node, messages, calls, cpg and monitors go both ways, and the
/// erl node it started is gone when it ends.
#[tokio::test]
async fn the_readme_demo_runs_against_a_real_erl_node_and_stops_it() {
    crate::require_erl!();
    let w = World::new().await;
    let out = demo(&w, None).await;
    for seen in [
        "started a real erl node",
        ": pong",
        "erl: got hello_from_rust",
        "erl: gen_server:call({echo,",
        "erl: the Rust cpg scope answered {new, Node} with [{\"demo/*\"",
        "rust: cpg get_members(\"from_erl\") -> <demo_erl_",
        "erl: 'DOWN' for {echo,",
        "rust: our monitor on",
        "demo done",
    ] {
        assert!(out.contains(seen), "{seen:?} missing from:\n{out}");
    }
    // "started a real erl node NAME (OS pid N)": N has exited.
    let pid: u32 = out
        .split("(OS pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .expect("the erl node's OS pid");
    assert!(
        crate::support::eventually(5, || async { os_process_gone(pid) }).await,
        "the demo's erl node {pid} still runs"
    );
}

/// Whether OS process `pid` has exited (gone, or a zombie).
fn os_process_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
}

/// The demo stopped by SIGTERM or SIGINT (as `kill`, `timeout` or a
/// terminal's Ctrl-C do) while its erl node runs: it stops that node and
/// exits with the signal's shell code (143, 130), leaving no erl behind.
#[tokio::test]
async fn an_interrupted_demo_stops_its_erl_node() {
    crate::require_erl!();
    use tokio::io::AsyncBufReadExt;
    let w = World::new().await;
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
            .arg("demo")
            .env("ERL_EPMD_PORT", w.epmd.port.to_string())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run cpg-node demo");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // "started a real erl node NAME (OS pid N)"
        let erl: u32 = loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
                .await
                .expect("the demo starts erl")
                .unwrap()
                .expect("the demo starts erl before it ends");
            if let Some(rest) = line.split("(OS pid ").nth(1) {
                break rest.trim_end_matches(')').parse().expect("an OS pid");
            }
        };
        let status = signal_and_wait(&mut child, signal, "the demo ends on the signal").await;
        assert_eq!(status.code(), Some(code), "signal {signal}: {status:?}");
        assert!(
            crate::support::eventually(5, || async { os_process_gone(erl) }).await,
            "the demo's erl node {erl} still runs after signal {signal}"
        );
    }
}

/// The same command on a machine without Erlang (no `erl` on the PATH):
/// a second Rust node plays the other side.
#[tokio::test]
async fn the_readme_demo_runs_without_erlang() {
    let w = World::new().await;
    let empty = std::env::temp_dir().join(unique("no_erl"));
    std::fs::create_dir_all(&empty).unwrap();
    let out = demo(&w, Some(empty.to_str().unwrap())).await;
    let _ = std::fs::remove_dir_all(&empty);
    assert!(
        out.contains("erl not found; demo with a second Rust node"),
        "{out}"
    );
    for seen in [
        ": pong",
        "rust2: gen_server call to echo: 'hi'",
        "rust2: cpg get_closest_pid(\"demo/x\") -> \"demo/*\"",
        "demo done",
    ] {
        assert!(out.contains(seen), "{seen:?} missing from:\n{out}");
    }
}

/// `run --max-total-copies N` sets each scope's bound on copies in all: a
/// `--join` past it stops the command with the scope's reason.
#[tokio::test]
async fn run_takes_the_scope_cap_on_copies() {
    let w = World::new().await;
    let name = unique("cap");
    let args = [
        "--sname",
        name.as_str(),
        "--cookie",
        w.cookie.as_str(),
        "run",
        "--max-total-copies",
        "2",
        "--join",
        "g",
        "--join",
        "g",
        "--join",
        "g",
    ];
    let (code, _, err) = cli_raw(&w, &args, None).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("joining \"g\"") && err.contains("past its limit of 2 copies in all"),
        "{err}"
    );
}

/// An `ERL_EPMD_PORT` that is no port number is refused, as `erl` refuses
/// to start its distribution then, rather than read as 4369 (which would
/// register the node with whatever EPMD runs there). No EPMD is needed to
/// see it.
#[tokio::test]
async fn an_epmd_port_that_is_no_port_number_is_refused() {
    for bad in ["abc", "99999", "0", ""] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
            .args(["--name", &unique("cli"), "--cookie", "c", "ping", "x@h"])
            .env("ERL_EPMD_PORT", bad)
            .output()
            .await
            .expect("run cpg-node");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(
            err.contains("ERL_EPMD_PORT is not a port number"),
            "{bad:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `cpg-node groups | head -1`, and `watch` so: a reader that stops
/// reading ends the command with exit code 0, no panic ("failed printing
/// to stdout: Broken pipe", exit 101, before), `watch` at its next line.
/// A group name cannot forge a line of text output: its newline and
/// escape character are printed escaped, and the name, holding spaces,
/// in double quotes.
#[tokio::test]
async fn output_into_a_closed_pipe_ends_quietly_and_names_forge_no_line() {
    use tokio::io::AsyncBufReadExt;
    let w = World::new().await;
    let a = w.rust_node("a").await;
    let scope = CpgScope::start(&a, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    let p = a.spawn_process();
    let forged = "evil\nfake_scope fake_group: <0.1.0>\u{1b}[31mRED\u{202e}";
    let mut counts: Vec<(String, usize)> = (0..5000).map(|i| (format!("g{i:05}"), 1)).collect();
    counts.push((forged.to_string(), 1));
    scope.join_counts(&counts, p.pid()).await.unwrap();
    let (code, out, err) = cli_text(&w, &["groups", "--connect", a.name()]).await;
    assert_eq!(code, 0, "{err}");
    let forged_line = out.lines().find(|l| l.contains("evil")).unwrap();
    assert!(
        forged_line.starts_with(&format!(
            "{DEFAULT_SCOPE} \"evil\\nfake_scope fake_group: <0.1.0>\\u{{1b}}[31mRED\\u{{202e}}\": "
        )),
        "{forged_line}"
    );
    assert!(!out.lines().any(|l| l.starts_with("fake_scope")), "{out}");
    for cmd in ["groups", "watch"] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpg-node"))
            .args(["--name", &unique("cli"), "--cookie", &w.cookie, cmd])
            .args(["--connect", a.name()])
            .env("ERL_EPMD_PORT", w.epmd.port.to_string())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run cpg-node");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.next_line().await.unwrap().is_some());
        drop(lines);
        if cmd == "watch" {
            // (Its next line, after the groups it prints first.)
            scope.join("later", p.pid()).await.unwrap();
        }
        let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
            .await
            .unwrap_or_else(|_| panic!("{cmd} did not end once stdout was gone"))
            .unwrap();
        let mut err = String::new();
        use tokio::io::AsyncReadExt;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        assert_eq!(status.code(), Some(0), "{cmd}: {err}");
        assert!(!err.contains("panicked"), "{cmd}: {err}");
    }
    a.shutdown().await;
}

/// The peak RSS (`VmHWM`) of OS process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A message to no receiver is dropped as it is read, as BEAM drops it,
/// without decoding its payload: four million `[]`s (4 MB on the wire)
/// sent to a name not registered took the node from 8 to 463 MB of RSS;
/// now its peak stays under 100 MB, and the node still answers.
#[tokio::test]
async fn a_message_to_no_one_is_not_decoded() {
    crate::require_erl!();
    let w = World::new().await;
    let run = RunningNode::start(&w, &["--register", "echo"]).await;
    let e = w.erl("e").await;
    let driver = w.rust_node("drv").await;
    let code = format!(
        "R = '{}', true = net_kernel:connect_node(R), \
         L = lists:duplicate(4000000, []), \
         {{no_such_name, R}} ! {{hello, L}}, \
         gen_server:call({{echo, R}}, still_here, 10000).",
        run.name
    );
    let got = crate::support::eval(&driver, &e.name, &code).await;
    assert!(
        cpg_node::term::show(&got)
            .to_string()
            .contains("still_here"),
        "{got}"
    );
    let peak = peak_rss_kib(run.child.id().unwrap());
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB");
    driver.shutdown().await;
}

/// `--name N@127.0.0.1` without `--long-names` is a long-name node, as
/// `erl -name N@127.0.0.1` is: it reaches a long-name `erl` node (loopback
/// clusters start so), and is refused by a short-name one.
#[tokio::test]
async fn a_name_at_an_ip_address_is_a_long_name() {
    crate::require_erl!();
    let w = World::new().await;
    let long = crate::support::ErlNode::start_long(&unique("el"), &w.cookie, w.epmd.port).await;
    let me = format!("{}@127.0.0.1", unique("ip"));
    let args = ["--name", &me, "--cookie", &w.cookie, "ping", &long.name];
    let (code, out, err) = cli_raw(&w, &args, None).await;
    assert_eq!((code, out.trim()), (0, "pong"), "{err}");
    let short = w.erl("es").await;
    let args = ["--name", &me, "--cookie", &w.cookie, "ping", &short.name];
    let (code, _, err) = cli_raw(&w, &args, None).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("short name"), "{err}");
}

/// `run`'s echo processes are kept as a supervisor keeps a permanent
/// child: the registered one killed (`exit(P, kill)`, as a link to a
/// crashed BEAM process does) or stopped (`gen_server:stop`) is followed
/// by a new one under the same name, and the `--join` member killed by a
/// new one in its groups. They stayed gone: the node connected, nothing
/// behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_echo_processes_come_back_after_they_end() {
    use crate::support::{eval, eval_with, eventually};
    use cpg_node::term::{self, Term};
    crate::require_erl!();
    let w = World::new().await;
    let run = RunningNode::start(&w, &["--register", "echo", "--join", "g"]).await;
    let e = w.erl("e").await;
    let driver = w.rust_node("drv").await;
    // The echo's pid, once it answers a call (`none` while no echo is
    // registered).
    let echo_pid = || {
        let code = format!(
            "R = '{}', true = net_kernel:connect_node(R), \
             case catch gen_server:call({{echo, R}}, ping, 1000) of \
               ping -> element(2, sys:get_status({{echo, R}})); \
               _ -> none end.",
            run.name
        );
        let (driver, e) = (&driver, &e.name);
        async move { eval(driver, e, &code).await }
    };
    let first = echo_pid().await;
    assert!(term::as_pid(&first).is_some(), "{first}");
    let kill = |p: &Term| {
        let (driver, e, p) = (&driver, &e.name, p.clone());
        async move { eval_with(driver, e, "exit(P, kill).", &[("P", p)]).await }
    };
    kill(&first).await;
    // A new echo other than `old`, within 10 s.
    let next_echo = |old: Term| {
        let echo_pid = &echo_pid;
        async move {
            for _ in 0..100 {
                let now = echo_pid().await;
                if term::as_pid(&now).is_some() && now != old {
                    return now;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("no echo other than {old} within 10 s");
        }
    };
    let second = next_echo(first.clone()).await;
    let stop = format!("gen_server:stop({{echo, '{}'}}).", run.name);
    let stopped = eval(&driver, &e.name, &stop).await;
    assert_eq!(term::as_atom(&stopped), Some("ok"), "{stopped}");
    next_echo(second).await;

    // The `--join` member, seen by another Rust node's scope.
    let scope = CpgScope::start(&driver, ScopeOptions::new(DEFAULT_SCOPE)).unwrap();
    driver.connect(&run.name).await.unwrap();
    let members = || {
        scope
            .get_members("g")
            .map(|(_, v)| v.to_vec())
            .unwrap_or_default()
    };
    assert!(eventually(10, || async { members().len() == 1 }).await);
    let member = Term::Pid(members()[0].to_pid());
    kill(&member).await;
    assert!(
        eventually(10, || async {
            let now = members();
            now.len() == 1 && Term::Pid(now[0].to_pid()) != member
        })
        .await,
        "no member in g after the kill: {:?}",
        members()
    );
    driver.shutdown().await;
}
