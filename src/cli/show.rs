//! What `status` and `groups` print: tables for a person, JSON objects
//! under `--json`.

use cpg_node::cpg::{CpgScope, MemberPid};
use cpg_node::status::NodeStatus;
use std::time::Duration;

/// Every group of `s`: (name, members newest first, local members).
pub(crate) fn group_rows(s: &CpgScope) -> Vec<(String, Vec<MemberPid>, Vec<MemberPid>)> {
    s.read(|st| {
        st.which_groups()
            .into_iter()
            .map(|g| {
                let all = st
                    .group(&g)
                    .map(|d| d.history().cloned().collect())
                    .unwrap_or_default();
                let local = st
                    .group(&g)
                    .map(|d| d.local().cloned().collect())
                    .unwrap_or_default();
                (g, all, local)
            })
            .collect()
    })
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The status as one JSON object, with the Erlang map's keys.
pub(crate) fn status_json(st: &NodeStatus) -> serde_json::Value {
    use serde_json::json;
    let peers: Vec<_> = st
        .peers
        .iter()
        .map(|p| {
            let l = &p.link;
            json!({
                "node": p.node, "creation": p.creation, "hidden": p.hidden,
                "direction": l.direction.map(|d| d.as_str()),
                "connected_ms": l.connected_for.map(ms), "last_heard_ms": ms(l.last_heard),
                "msgs_in": l.msgs_in, "msgs_out": l.msgs_out,
                "bytes_in": l.bytes_in, "bytes_out": l.bytes_out, "queued": l.queued,
                "queued_bytes": l.queued_bytes,
            })
        })
        .collect();
    let scopes: Vec<_> = st
        .scopes
        .iter()
        .map(|s| {
            json!({
                "scope": s.scope, "groups": s.groups, "members": s.members,
                "local_members": s.local_members, "pids": s.pids,
                "node_types": s.node_types.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            })
        })
        .collect();
    let cluster = st.cluster.as_ref().map(|ts| {
        ts.iter()
            .map(|t| {
                json!({
                    "node": t.node, "origin": origin_text(t.origin), "connected": t.connected,
                    "failures": t.failures, "next_attempt_ms": t.next_attempt_in.map(ms),
                    "last_error": t.last_error,
                })
            })
            .collect::<Vec<_>>()
    });
    json!({
        "node": st.node, "creation": st.creation, "version": st.version,
        "uptime_ms": ms(st.uptime), "processes": st.processes,
        "peers": peers, "scopes": scopes, "cluster": cluster,
    })
}

fn origin_text(o: cpg_node::node::cluster::Origin) -> &'static str {
    use cpg_node::node::cluster::Origin;
    match o {
        Origin::Seed => "seed",
        Origin::Discovered => "discovered",
        Origin::Seen => "seen",
    }
}

/// A duration as a person reads it: `850ms`, `12.3s`, `4m05s`, `2h03m`.
fn human_time(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A byte count as a person reads it: `812 B`, `12.4 KiB`, `3.1 MiB`.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Prints rows as columns two spaces apart, indented by two.
fn print_table(head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        outln!("  {}", s.join("  ").trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `node (type), ...` of a scope's peers, `-` for none.
fn node_types_text(types: &[(String, String)]) -> String {
    if types.is_empty() {
        return "-".into();
    }
    let shown: Vec<String> = types.iter().map(|(n, t)| format!("{n} ({t})")).collect();
    shown.join(", ")
}

/// The status as text; `me` (the asking node, a peer for the moment) is
/// marked.
pub(crate) fn print_status(st: &NodeStatus, me: &str) {
    let name = |n: &str, hidden: bool| {
        if n == me {
            format!("{n} (this query)")
        } else if hidden {
            format!("{n} (hidden)")
        } else {
            n.to_string()
        }
    };
    outln!(
        "node {} (creation {}), cpg-node {}",
        st.node,
        st.creation,
        st.version
    );
    outln!("up {}, {} processes", human_time(st.uptime), st.processes);
    outln!();
    outln!("peers: {}", st.peers.len());
    if !st.peers.is_empty() {
        let rows: Vec<Vec<String>> = st
            .peers
            .iter()
            .map(|p| {
                let l = &p.link;
                vec![
                    name(&p.node, p.hidden),
                    l.direction.map_or("-", |d| d.as_str()).to_string(),
                    l.connected_for.map_or("-".into(), human_time),
                    format!("{} ago", human_time(l.last_heard)),
                    format!("{}/{}", l.msgs_in, l.msgs_out),
                    format!("{}/{}", human_bytes(l.bytes_in), human_bytes(l.bytes_out)),
                    if l.queued == 0 {
                        "0".to_string()
                    } else {
                        format!("{} ({})", l.queued, human_bytes(l.queued_bytes as u64))
                    },
                ]
            })
            .collect();
        print_table(
            &[
                "NODE",
                "DIR",
                "UP",
                "LAST HEARD",
                "MSGS IN/OUT",
                "BYTES IN/OUT",
                "QUEUED",
            ],
            &rows,
        );
    }
    outln!();
    outln!("scopes: {}", st.scopes.len());
    if !st.scopes.is_empty() {
        let rows: Vec<Vec<String>> = st
            .scopes
            .iter()
            .map(|s| {
                vec![
                    s.scope.clone(),
                    s.groups.to_string(),
                    s.members.to_string(),
                    s.local_members.to_string(),
                    s.pids.to_string(),
                    node_types_text(&s.node_types),
                ]
            })
            .collect();
        print_table(
            &["SCOPE", "GROUPS", "MEMBERS", "LOCAL", "PIDS", "NODE TYPES"],
            &rows,
        );
    }
    outln!();
    match &st.cluster {
        None => outln!("cluster: no keeper runs"),
        Some(ts) => {
            let n = ts.len();
            outln!("cluster: {n} node{} kept", if n == 1 { "" } else { "s" });
            if !ts.is_empty() {
                let rows: Vec<Vec<String>> = ts
                    .iter()
                    .map(|t| {
                        vec![
                            name(&t.node, false),
                            origin_text(t.origin).to_string(),
                            if t.connected { "yes" } else { "no" }.to_string(),
                            t.failures.to_string(),
                            t.next_attempt_in
                                .map_or("-".into(), |d| format!("in {}", human_time(d))),
                            t.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "NODE",
                        "ORIGIN",
                        "CONNECTED",
                        "FAILURES",
                        "NEXT ATTEMPT",
                        "LAST ERROR",
                    ],
                    &rows,
                );
            }
        }
    }
}

/// `name` for a line of text output: as it is, or in double quotes if it
/// is empty or holds a space, a double quote or a character that is
/// escaped. Escaped are control characters (a newline, an escape
/// sequence), bidirectional and invisible format characters, a backslash
/// and, in quotes, a double quote: they are written as Rust escapes (`\n`,
/// `\u{1b}`, `\\`, `\"`). So a name cannot forge a line of output or
/// drive the terminal, and `"my group"` reads as one name among the
/// line's other words (`--json` escapes as JSON does).
pub(crate) fn plain(name: &str) -> std::borrow::Cow<'_, str> {
    // (Bidirectional and invisible format characters too: U+202E turns
    // the rest of a line around.)
    let escaped = |c: char| {
        c.is_control()
            || c == '\\'
            || c == '"'
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
    };
    if !name.is_empty() && !name.chars().any(|c| escaped(c) || c.is_whitespace()) {
        return name.into();
    }
    let mut out = String::with_capacity(name.len() + 8);
    out.push('"');
    for c in name.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out.into()
}

pub(crate) fn print_group(
    scope: &str,
    group: &str,
    key: &str,
    pids: &[MemberPid],
    local: &[MemberPid],
    json: bool,
) {
    let text = |v: &[MemberPid]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    let remote: Vec<MemberPid> = pids
        .iter()
        .filter(|p| !local.contains(p))
        .cloned()
        .collect();
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "scope": scope, "group": group, "pattern": key, "pids": text(pids),
                "local": text(local), "remote": text(&remote),
            })
        );
    } else {
        let via = if key != group {
            format!(" (via {})", plain(key))
        } else {
            String::new()
        };
        outln!("{scope} {}{via}: {}", plain(group), text(pids).join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn a_name_is_bare_unless_it_has_a_space_a_quote_or_an_escape() {
        assert_eq!(plain("jobs/42"), "jobs/42");
        assert_eq!(plain("Grüße:*"), "Grüße:*");
        assert_eq!(plain("my group"), "\"my group\"");
        assert_eq!(plain(""), "\"\"");
        assert_eq!(plain("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(plain("a\\b"), "\"a\\\\b\"");
        assert_eq!(plain("a\nb\u{202e}"), "\"a\\nb\\u{202e}\"");
        assert_eq!(plain("tab\there"), "\"tab\\there\"");
    }
}
