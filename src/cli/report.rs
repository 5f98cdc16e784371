//! How the binary reports a failure: one line on stderr, or a JSON object
//! under `--json`, and the exit code.

use cpg_node::config::{ConfigError, CookieError, NameError};
use cpg_node::node::DownReason;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a line written to stdout failed: its reader is gone (a pipe
/// into `head` that read enough).
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `args` and a newline to stdout, as `println!` does, without its
/// panic when stdout is gone (`cpg-node groups | head -1` exited 101 with
/// "failed printing to stdout: Broken pipe"): the line is dropped, and
/// [`stdout_gone`] says so from then on. What the command does besides
/// printing (a node's shutdown, the demo's clean-up) still runs.
pub(crate) fn out_line(args: std::fmt::Arguments<'_>) {
    if write_line(&mut std::io::stdout().lock(), args).is_err() {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// `args` and a newline to `w`.
fn write_line(w: &mut impl Write, args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    w.write_fmt(args)?;
    w.write_all(b"\n")
}

/// Writes `args` and a newline to stderr, as `eprintln!` does, without its
/// panic when stderr is gone (its reader exited: a log shipper, a
/// supervisor's pipe); the line is dropped.
pub(crate) fn err_line(args: std::fmt::Arguments<'_>) {
    let _ = write_line(&mut std::io::stderr().lock(), args);
}

/// Where the log goes: stderr, whose write errors are dropped. With the
/// plain `std::io::stderr` writer, a write that failed (its reader gone,
/// `EPIPE`) had `tracing-subscriber` report it with `eprintln!`, which
/// panicked on the same broken stderr in whatever task logged: the
/// accept loop or a dial, and the running node could connect to no one
/// again (`pang`) while it stayed up. BEAM logs into the void then, and
/// keeps serving.
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Whether stdout is gone ([`out_line`]): a command that prints as events
/// come (`watch`, ...) stops then.
pub(crate) fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// A mistake the user can fix (a bad argument, an unknown group, ...):
/// printed as one line, with a `kind` for `--json`.
#[derive(Debug)]
pub struct UserError {
    /// A short stable tag: `usage`, `no_such_group`, `bad_group_name`, ...
    pub kind: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

pub(crate) fn user_error(kind: &'static str, message: impl Into<String>) -> anyhow::Error {
    UserError {
        kind,
        message: message.into(),
    }
    .into()
}

/// What kind of failure `e` is, for `--json` and the exit code.
fn kind_of(e: &anyhow::Error) -> &'static str {
    for c in e.chain() {
        if let Some(u) = c.downcast_ref::<UserError>() {
            return u.kind;
        }
        if c.is::<NameError>() || c.is::<ConfigError>() {
            return "usage";
        }
        if c.is::<CookieError>() {
            return "cookie_file";
        }
        if let Some(r) = c.downcast_ref::<DownReason>() {
            return down_kind(r);
        }
    }
    "error"
}

/// The error kind of a failed connection, from its typed reason.
fn down_kind(r: &DownReason) -> &'static str {
    match r {
        DownReason::WrongCookie(_) => "wrong_cookie",
        DownReason::MixedNames(_) => "mixed_names",
        _ => "unreachable",
    }
}

/// `e` and its causes, joined with `: ` as `{e:#}` joins them, a cause
/// left out where the text before already ends with it: the library's
/// errors name their source in their own text ("cookie file F:
/// Read-only file system (os error 30)"), which the chain then said twice.
fn chain_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.is_empty() {
            text = c;
        } else if !text.ends_with(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// Prints `e` once (stderr, or a JSON object on stdout under `--json`);
/// returns the exit code: 2 for a usage error, as clap uses, else 1.
pub fn report(e: &anyhow::Error, json: bool) -> i32 {
    let kind = kind_of(e);
    let message = chain_text(e);
    if json {
        outln!("{}", serde_json::json!({ "error": message, "kind": kind }));
    } else {
        err_line(format_args!("error: {message}"));
    }
    if kind == "usage" {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_said_is_not_said_again() {
        let io = std::io::Error::other("Read-only file system");
        let e = anyhow::Error::new(cpg_node::config::CookieError::Io {
            path: "/h/.erlang.cookie".into(),
            source: io,
        })
        .context("cannot start node x@h");
        assert_eq!(
            super::chain_text(&e),
            "cannot start node x@h: cookie file /h/.erlang.cookie: Read-only file system"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::chain_text(&plain), "outer: inner");
    }
}
