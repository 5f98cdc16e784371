//! `sys`'s debug options on a server loop ([`Process::serve`],
//! [`Process::serve_calls`], [`Process::serve_calls_async`]), kept as a
//! gen_server keeps them: `sys:statistics/2`, `sys:log/2` and
//! `sys:trace/2` (and `sys:no_debug/1`).
//!
//! A gen_server records an event for each message its loop takes (`{in,
//! Msg}`), each reply it sends (`{out, Reply, From, State}`) and each
//! message it answers nothing to (`{noreply, State}`); system messages are
//! not events. Statistics count them, the log keeps the last N, and a trace
//! prints each one as it happens: on BEAM to the server's group leader,
//! here to this node's log (`tracing`, target `cpg_node::sys`), in
//! gen_server's words (`*DBG* echo got call ping from <...>`).
//!
//! What this node cannot do it says: `{log_to_file, File}` is answered
//! `{error, open_file}` (a peer does not get this node to write files),
//! `{install, ...}` and `{remove, ...}` `unknown_debug` (their funs are
//! Erlang code, which no process here runs), and the statistics'
//! `reductions` are 0 (there are none). The state in events is
//! `undefined`, as [`Process::serve`]'s `sys:get_state`.
//!
//! [`Process::serve`]: super::Process::serve
//! [`Process::serve_calls`]: super::Process::serve_calls
//! [`Process::serve_calls_async`]: super::Process::serve_calls_async

use super::CallFrom;
use crate::term::{self, atom, show, tuple, Encoded, Term};
use std::collections::VecDeque;
use std::time::SystemTime;

/// The most events `sys:log(Server, {true, N})` keeps, whatever `N`
/// asks: each holds its message, and a peer's `N` should not make this
/// node keep millions of them.
pub const MAX_LOGGED_EVENTS: usize = 10_000;

/// The most bytes the events of one log take, in the external format
/// (the oldest go first past it; an event larger alone is not kept). A
/// term can take 28 times its external size once decoded, and a peer that
/// turned the log on and sent 300 casts of 200 KB held the node at 1.7 GB:
/// the log keeps the bytes, and decodes them only when asked (`sys:log(S,
/// get)` or `print`); `sys:get_status` writes them as they are.
pub const MAX_LOGGED_BYTES: usize = 1 << 20;

/// How many events `sys:log(Server, true)` keeps, as on BEAM.
const DEFAULT_LOGGED_EVENTS: usize = 10;

/// One event of a server loop.
pub(super) enum Event<'a> {
    /// A message taken (a call, a cast, any other message or signal).
    In(&'a Term),
    /// A reply sent.
    Out {
        /// The reply.
        reply: &'a Term,
        /// The caller.
        to: &'a CallFrom,
    },
    /// A message answered with nothing (a cast, another message, a call
    /// whose reply another task sends).
    NoReply,
}

impl Event<'_> {
    /// As gen_server logs it: `{in, Msg}`, `{out, Reply, {Pid, Tag},
    /// State}`, `{noreply, State}`.
    fn to_term(&self) -> Term {
        match self {
            Event::In(msg) => tuple(vec![atom("in"), (*msg).clone()]),
            Event::Out { reply, to } => tuple(vec![
                atom("out"),
                (*reply).clone(),
                tuple(vec![Term::Pid(to.pid.clone()), to.tag.clone()]),
                atom("undefined"),
            ]),
            Event::NoReply => tuple(vec![atom("noreply"), atom("undefined")]),
        }
    }
}

/// The text gen_server's `print_event` gives a logged event (`Name`
/// first).
fn event_text(name: &str, event: &Term) -> String {
    let t = term::as_tuple(event).unwrap_or(&[]);
    match (t.first().and_then(term::as_atom), t.len()) {
        (Some("in"), 2) => {
            let msg = &t[1];
            if let Some((from, call)) = super::parse_call(msg) {
                format!(
                    "*DBG* {name} got call {} from {}",
                    show(call),
                    term::pid_text(&from.pid)
                )
            } else if let Some(cast) = super::parse_cast(msg) {
                format!("*DBG* {name} got cast {}", show(cast))
            } else {
                format!("*DBG* {name} got {}", show(msg))
            }
        }
        (Some("out"), 4) => {
            let to = term::as_tuple(&t[2])
                .and_then(|f| f.first())
                .map(|p| match term::as_pid(p) {
                    Some(p) => term::pid_text(p),
                    None => show(p).to_string(),
                })
                .unwrap_or_default();
            format!(
                "*DBG* {name} sent {} to {to}, new state {}",
                show(&t[1]),
                show(&t[3])
            )
        }
        (Some("noreply"), 2) => format!("*DBG* {name} new state {}", show(&t[1])),
        _ => format!("*DBG* {name} {}", show(event)),
    }
}

/// What `sys`'s debug options keep for one server loop.
#[derive(Debug, Default)]
pub(super) struct SysDebug {
    stats: Option<Stats>,
    log: Option<Log>,
    trace: bool,
}

#[derive(Debug)]
struct Stats {
    start: SystemTime,
    messages_in: u64,
    messages_out: u64,
}

#[derive(Debug)]
struct Log {
    cap: usize,
    /// Each event's bytes, oldest first.
    events: VecDeque<Encoded>,
    /// Their bytes together (at most [`MAX_LOGGED_BYTES`]).
    bytes: usize,
}

impl SysDebug {
    /// Nothing is on: the loop need not keep this.
    pub(super) fn is_off(&self) -> bool {
        self.stats.is_none() && self.log.is_none() && !self.trace
    }

    /// Records `event` of the server named `name` (asked only when a
    /// trace prints it).
    pub(super) fn record(&mut self, event: Event<'_>, name: impl FnOnce() -> String) {
        if let Some(s) = &mut self.stats {
            match event {
                Event::In(_) => s.messages_in += 1,
                Event::Out { .. } => s.messages_out += 1,
                Event::NoReply => {}
            }
        }
        if self.log.is_none() && !self.trace {
            return;
        }
        let event = event.to_term();
        if self.trace {
            tracing::info!(target: "cpg_node::sys", "{}", event_text(&name(), &event));
        }
        if let Some(log) = &mut self.log {
            let Ok(event) = Encoded::of_term(&event) else {
                return;
            };
            let len = event.as_bytes().len();
            if log.cap == 0 || len > MAX_LOGGED_BYTES {
                return;
            }
            while log.events.len() >= log.cap || log.bytes + len > MAX_LOGGED_BYTES {
                let Some(old) = log.events.pop_front() else {
                    break;
                };
                log.bytes -= old.as_bytes().len();
            }
            log.bytes += len;
            log.events.push_back(event);
        }
    }

    /// The logged events' bytes, oldest first (`"Logged events"` of
    /// `sys:get_status`).
    pub(super) fn logged(&self) -> impl Iterator<Item = &Encoded> {
        self.log.iter().flat_map(|l| l.events.iter())
    }

    /// The logged events as terms, oldest first (those that cannot be
    /// read back, none, left out).
    fn logged_terms(&self) -> Vec<Term> {
        self.logged()
            .filter_map(|e| e.decode(term::Limits::default()).ok())
            .collect()
    }

    /// Answers `{debug, Option}`: the reply gen_server gives, the option
    /// applied. `name` names the server in printed events.
    pub(super) fn command(&mut self, option: &Term, name: impl FnOnce() -> String) -> Term {
        let ok = || atom("ok");
        if term::as_atom(option) == Some("no_debug") {
            *self = SysDebug::default();
            return ok();
        }
        let Some([what, arg]) = term::as_tuple(option) else {
            return atom("unknown_debug");
        };
        let flag = term::as_atom(arg);
        match (term::as_atom(what), flag) {
            (Some("statistics"), Some("true")) => {
                self.stats.get_or_insert(Stats {
                    start: SystemTime::now(),
                    messages_in: 0,
                    messages_out: 0,
                });
                ok()
            }
            (Some("statistics"), Some("false")) => {
                self.stats = None;
                ok()
            }
            (Some("statistics"), Some("get")) => match &self.stats {
                None => tuple(vec![ok(), atom("no_statistics")]),
                Some(s) => {
                    let pair = |k: &str, v: Term| tuple(vec![atom(k), v]);
                    let n = term::uint;
                    tuple(vec![
                        ok(),
                        term::list(vec![
                            pair("start_time", date_time(s.start)),
                            pair("current_time", date_time(SystemTime::now())),
                            pair("reductions", n(0)),
                            pair("messages_in", n(s.messages_in)),
                            pair("messages_out", n(s.messages_out)),
                        ]),
                    ])
                }
            },
            (Some("log"), Some("true")) => self.log_on(DEFAULT_LOGGED_EVENTS),
            (Some("log"), None) => match term::as_tuple(arg) {
                Some([t, n]) if term::as_atom(t) == Some("true") => {
                    match term::as_int(n).filter(|&n| n >= 0) {
                        Some(n) => self.log_on(usize::try_from(n).unwrap_or(usize::MAX)),
                        None => atom("unknown_debug"),
                    }
                }
                _ => atom("unknown_debug"),
            },
            (Some("log"), Some("false")) => {
                self.log = None;
                ok()
            }
            (Some("log"), Some("get")) => tuple(vec![ok(), term::list(self.logged_terms())]),
            (Some("log"), Some("print")) => {
                let name = name();
                for e in self.logged_terms() {
                    tracing::info!(target: "cpg_node::sys", "{}", event_text(&name, &e));
                }
                ok()
            }
            (Some("trace"), Some(b @ ("true" | "false"))) => {
                self.trace = b == "true";
                ok()
            }
            (Some("log_to_file"), Some("false")) => ok(),
            (Some("log_to_file"), _) => tuple(vec![atom("error"), atom("open_file")]),
            _ => atom("unknown_debug"),
        }
    }

    fn log_on(&mut self, cap: usize) -> Term {
        self.log.get_or_insert(Log {
            cap: cap.min(MAX_LOGGED_EVENTS),
            events: VecDeque::new(),
            bytes: 0,
        });
        atom("ok")
    }
}

/// `{{Year, Month, Day}, {Hour, Minute, Second}}` of `t`, in UTC
/// (`erlang:localtime/0` on a node whose time zone is UTC).
fn date_time(t: SystemTime) -> Term {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let i = term::uint;
    tuple(vec![
        tuple(vec![i(y), i(m), i(d)]),
        tuple(vec![i(rem / 3600), i(rem % 3600 / 60), i(rem % 60)]),
    ])
}

/// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{int, list, string_to_charlist as charlist, uint};

    fn opt(what: &str, arg: Term) -> Term {
        tuple(vec![atom(what), arg])
    }

    fn name() -> String {
        "echo".into()
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        // 2000-02-29, a leap day of a century divisible by 400
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_794), (2026, 12, 7));
    }

    #[test]
    fn off_until_asked_and_answers_as_gen_server() {
        let mut d = SysDebug::default();
        assert!(d.is_off());
        assert_eq!(
            d.command(&opt("statistics", atom("get")), name),
            tuple(vec![atom("ok"), atom("no_statistics")])
        );
        assert_eq!(
            d.command(&opt("log", atom("get")), name),
            tuple(vec![atom("ok"), list(vec![])])
        );
        assert_eq!(d.command(&opt("log", atom("print")), name), atom("ok"));
        assert_eq!(d.command(&atom("bogus"), name), atom("unknown_debug"));
        assert_eq!(
            d.command(&opt("statistics", atom("maybe")), name),
            atom("unknown_debug")
        );
        assert_eq!(
            d.command(&opt("log", tuple(vec![atom("true"), atom("x")])), name),
            atom("unknown_debug")
        );
        assert_eq!(
            d.command(&opt("log_to_file", charlist("/tmp/x")), name),
            tuple(vec![atom("error"), atom("open_file")])
        );
        assert_eq!(
            d.command(&opt("install", atom("f")), name),
            atom("unknown_debug")
        );
        assert!(d.is_off());
    }

    #[test]
    fn statistics_count_ins_and_outs_and_the_log_keeps_the_last_n() {
        let mut d = SysDebug::default();
        assert_eq!(
            d.command(&opt("statistics", atom("true")), name),
            atom("ok")
        );
        let cap = tuple(vec![atom("true"), int(2)]);
        assert_eq!(d.command(&opt("log", cap), name), atom("ok"));
        let from = CallFrom {
            pid: crate::term::Pid::new("a@h", 1, 0, 1),
            tag: atom("t"),
        };
        let (m1, m2, r) = (atom("m1"), atom("m2"), atom("r"));
        d.record(Event::In(&m1), name);
        d.record(Event::NoReply, name);
        d.record(Event::In(&m2), name);
        d.record(
            Event::Out {
                reply: &r,
                to: &from,
            },
            name,
        );
        let Term::Tuple(stats) = d.command(&opt("statistics", atom("get")), name) else {
            panic!("no statistics");
        };
        let Term::List(items) = &stats.elements[1] else {
            panic!("not a list: {stats}");
        };
        let keys: Vec<_> = items
            .elements
            .iter()
            .map(|p| term::as_tuple(p).unwrap()[0].clone())
            .collect();
        assert_eq!(
            keys,
            [
                "start_time",
                "current_time",
                "reductions",
                "messages_in",
                "messages_out"
            ]
            .map(atom)
        );
        let value = |i: usize| term::as_tuple(&items.elements[i]).unwrap()[1].clone();
        assert_eq!((value(3), value(4)), (uint(2), uint(1)));
        // the last two events, oldest first
        let from_term = tuple(vec![Term::Pid(from.pid.clone()), atom("t")]);
        assert_eq!(
            d.command(&opt("log", atom("get")), name),
            tuple(vec![
                atom("ok"),
                list(vec![
                    tuple(vec![atom("in"), m2]),
                    tuple(vec![atom("out"), r, from_term, atom("undefined")]),
                ])
            ])
        );
        assert_eq!(d.command(&atom("no_debug"), name), atom("ok"));
        assert!(d.is_off());
    }

    #[test]
    fn a_huge_log_size_is_capped() {
        let mut d = SysDebug::default();
        let cap = tuple(vec![atom("true"), int(i32::MAX)]);
        assert_eq!(d.command(&opt("log", cap), name), atom("ok"));
        let m = atom("m");
        for _ in 0..MAX_LOGGED_EVENTS + 5 {
            d.record(Event::In(&m), name);
        }
        assert_eq!(d.logged().count(), MAX_LOGGED_EVENTS);
    }

    /// Large messages: the log keeps at most `MAX_LOGGED_BYTES` of them,
    /// the newest; one larger alone is not kept.
    #[test]
    fn the_log_is_bounded_in_bytes() {
        let mut d = SysDebug::default();
        let cap = tuple(vec![atom("true"), int(1000)]);
        assert_eq!(d.command(&opt("log", cap), name), atom("ok"));
        let big = crate::term::binary(vec![7; 100_000]);
        for _ in 0..50 {
            d.record(Event::In(&big), name);
        }
        let kept: usize = d.logged().map(|e| e.as_bytes().len()).sum();
        assert!(kept <= MAX_LOGGED_BYTES, "{kept}");
        assert_eq!(d.logged().count(), MAX_LOGGED_BYTES / 100_010);
        let huge = crate::term::binary(vec![7; MAX_LOGGED_BYTES + 1]);
        d.record(Event::In(&huge), name);
        assert_eq!(d.logged().count(), MAX_LOGGED_BYTES / 100_010);
        let Term::Tuple(got) = d.command(&opt("log", atom("get")), name) else {
            panic!("not a tuple");
        };
        let events = term::as_list(&got.elements[1]).unwrap();
        assert_eq!(events.last(), Some(&tuple(vec![atom("in"), big])));
    }

    proptest::proptest! {
        /// Any option a peer sends, bare or under a known key, is answered
        /// (never a panic) with one of gen_server's answers, and whatever
        /// events follow, the log stays within its bounds.
        #[test]
        fn any_option_is_answered_and_the_log_stays_bounded(
            key in proptest::sample::select(vec!["statistics", "log", "trace", "log_to_file", "install", "x"]),
            arg in crate::dist::control::tests::arb_term(),
            bare in crate::dist::control::tests::arb_term(),
            events in proptest::collection::vec(crate::dist::control::tests::arb_term(), 0..20),
        ) {
            let mut d = SysDebug::default();
            d.command(&opt("log", atom("true")), name);
            for option in [opt(key, arg), bare] {
                let answer = d.command(&option, name);
                let shape = match &answer {
                    Term::Atom(a) => a.name.clone(),
                    Term::Tuple(t) => format!("{}/{}", show(&t.elements[0]), t.elements.len()),
                    other => format!("{other}"),
                };
                proptest::prop_assert!(
                    ["ok", "unknown_debug", "ok/2", "error/2"].contains(&shape.as_str()),
                    "{}", answer
                );
            }
            for e in &events {
                d.record(Event::In(e), name);
                d.record(Event::NoReply, name);
            }
            let kept: usize = d.logged().map(|e| e.as_bytes().len()).sum();
            proptest::prop_assert!(kept <= MAX_LOGGED_BYTES);
            proptest::prop_assert!(d.logged().count() <= MAX_LOGGED_EVENTS);
        }
    }

    #[test]
    fn events_print_as_gen_server_prints_them() {
        let from = CallFrom {
            pid: crate::term::Pid::new("a@h", 9, 0, 1),
            tag: atom("t"),
        };
        let call = tuple(vec![
            atom("$gen_call"),
            tuple(vec![Term::Pid(from.pid.clone()), atom("t")]),
            atom("ping"),
        ]);
        let text = |e: Event<'_>| event_text("echo", &e.to_term());
        assert_eq!(
            text(Event::In(&call)),
            "*DBG* echo got call ping from <a@h.9.0>"
        );
        let cast = tuple(vec![atom("$gen_cast"), int(1)]);
        assert_eq!(text(Event::In(&cast)), "*DBG* echo got cast 1");
        assert_eq!(text(Event::In(&int(2))), "*DBG* echo got 2");
        let r = atom("pong");
        assert!(text(Event::Out {
            reply: &r,
            to: &from
        })
        .starts_with("*DBG* echo sent pong to <a@h.9.0>"));
        assert_eq!(text(Event::NoReply), "*DBG* echo new state undefined");
    }
}
