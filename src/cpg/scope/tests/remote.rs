use super::*;

// ------------------------------------------------------------------
// Remote requests

#[test]
fn remote_requests() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    let (a1, b1) = (t("a", 1), t("b", 1));
    let e = s.remote_request(
        "a",
        Request::Join {
            name: "g".into(),
            pid: a1.clone(),
        },
    );
    assert_eq!(notifies(&e), vec![n("g", &a1, Reason::JoinRemote)]);
    assert_eq!(monitors(&e), vec![a1.clone()]);
    assert!(casts(&e).is_empty(), "replicas never cast");
    let e = s.remote_request(
        "a",
        Request::JoinCounts {
            counts: counts(&[("g", 2), ("h", 1)]),
            pid: a1.clone(),
        },
    );
    assert!(monitors(&e).is_empty());
    assert_eq!(notifies(&e).len(), 2);
    let d = s.group_data("g").unwrap();
    assert_eq!((d.local_count, d.remote_count), (0, 3));
    assert_eq!(d.remote, vec![a1.clone(); 3]);
    // leave of unknown group / pid: ignored
    assert!(s
        .remote_request(
            "a",
            Request::Leave {
                name: "x".into(),
                pid: a1.clone()
            }
        )
        .is_empty());
    assert!(s
        .remote_request(
            "a",
            Request::Leave {
                name: "g".into(),
                pid: t("a", 9)
            }
        )
        .is_empty());
    assert!(s
        .remote_request("a", Request::LeaveAll { pid: t("a", 9) })
        .is_empty());
    // leave_counts with one unknown name: nothing at all
    assert!(s
        .remote_request(
            "a",
            Request::LeaveCounts {
                counts: counts(&[("g", 1), ("x", 1)]),
                pid: a1.clone()
            }
        )
        .is_empty());
    assert_eq!(s.join_count("g", &a1), 3);
    // replica side does not validate counts: more than present removes all
    let e = s.remote_request(
        "a",
        Request::LeaveCounts {
            counts: counts(&[("g", 9)]),
            pid: a1.clone(),
        },
    );
    assert_eq!(notifies(&e), vec![n("g", &a1, Reason::LeaveRemote); 3]);
    assert!(demonitors(&e).is_empty());
    assert!(s.group("g").is_none());
    let e = s.remote_request("a", Request::LeaveAll { pid: a1.clone() });
    assert_eq!(demonitors(&e), vec![a1.clone()]);
    assert_eq!(notifies(&e), vec![n("h", &a1, Reason::LeaveRemote)]);
    // requests about our own pids, from ourselves, empty names, zero counts: ignored
    s.join("g", b1.clone()).unwrap();
    for r in [
        Request::Join {
            name: "g".into(),
            pid: b1.clone(),
        },
        Request::Leave {
            name: "g".into(),
            pid: b1.clone(),
        },
        Request::LeaveAll { pid: b1.clone() },
        Request::LeaveCounts {
            counts: counts(&[("g", 1)]),
            pid: b1.clone(),
        },
    ] {
        assert!(s.remote_request("a", r).is_empty());
    }
    assert!(s
        .remote_request(
            "b",
            Request::Join {
                name: "g".into(),
                pid: a1.clone()
            }
        )
        .is_empty());
    assert!(s
        .remote_request(
            "a",
            Request::Join {
                name: String::new(),
                pid: a1.clone()
            }
        )
        .is_empty());
    assert!(s
        .remote_request(
            "a",
            Request::JoinCounts {
                counts: counts(&[("q", 0)]),
                pid: a1.clone()
            }
        )
        .is_empty());
    assert_eq!(history(&s, "g"), vec![b1.clone()]);
    assert_eq!(s.which_groups(), vec!["g"]);
    check_invariants(&s);
}

#[test]
fn remote_join_from_unlistened_node_is_applied() {
    // cpg applies join casts whatever the sender's node type.
    let mut s = Scope::new("b");
    s.node_up("h", false);
    let h1 = t("h", 1);
    let e = s.remote_request(
        "h",
        Request::Join {
            name: "g".into(),
            pid: h1.clone(),
        },
    );
    assert_eq!(monitors(&e), vec![h1.clone()]);
    assert_eq!(history(&s, "g"), vec![h1.clone()]);
    // but our writes are not cast to it
    let e = s.join("g", t("b", 1)).unwrap();
    assert!(casts(&e).is_empty());
    // and it gets no exchange on connection, but does on {new, Node}
    assert!(s.node_up("h", false).is_empty());
    assert_eq!(casts(&s.new_node("h")).len(), 1);
}

// ------------------------------------------------------------------
// Deaths and nodes

#[test]
fn member_down_removes_everything() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    let (a1, b1) = (t("a", 1), t("b", 1));
    s.remote_request(
        "a",
        Request::JoinCounts {
            counts: counts(&[("z", 1), ("g", 2)]),
            pid: a1.clone(),
        },
    );
    s.join_counts(&counts(&[("g", 2)]), b1.clone()).unwrap();
    let e = s.member_down(&b1, "killed");
    assert_eq!(
        notifies(&e),
        vec![n("g", &b1, Reason::Exit("killed".into())); 2]
    );
    assert!(demonitors(&e).is_empty());
    assert!(casts(&e).is_empty(), "nothing is sent when a member dies");
    let e = s.member_down(&a1, "noproc");
    assert_eq!(
        notifies(&e),
        vec![
            n("g", &a1, Reason::Exit("noproc".into())),
            n("g", &a1, Reason::Exit("noproc".into())),
            n("z", &a1, Reason::Exit("noproc".into()))
        ]
    );
    assert_eq!(s.group_count(), 0);
    assert!(s.member_down(&a1, "noproc").is_empty());
    check_invariants(&s);
}

#[test]
fn node_down_removes_members_of_that_node() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    s.node_up("c", true);
    let (a1, a2, c1, b1) = (t("a", 1), t("a", 2), t("c", 1), t("b", 1));
    s.remote_request(
        "a",
        Request::Join {
            name: "g".into(),
            pid: a1.clone(),
        },
    );
    s.remote_request(
        "a",
        Request::Join {
            name: "h".into(),
            pid: a2.clone(),
        },
    );
    s.remote_request(
        "c",
        Request::Join {
            name: "g".into(),
            pid: c1.clone(),
        },
    );
    s.join("h", b1.clone()).unwrap();
    let e = s.node_down("a");
    assert_eq!(
        notifies(&e),
        vec![
            n("g", &a1, Reason::Exit(NODEDOWN_REASON.into())),
            n("h", &a2, Reason::Exit(NODEDOWN_REASON.into()))
        ]
    );
    assert!(demonitors(&e).is_empty());
    assert!(!s.is_listened("a"));
    assert_eq!(s.connected_nodes().collect::<Vec<_>>(), vec!["c"]);
    assert_eq!(history(&s, "g"), vec![c1.clone()]);
    assert_eq!(history(&s, "h"), vec![b1.clone()]);
    // our writes now go to c only
    let e = s.join("g", b1.clone()).unwrap();
    assert_eq!(casts(&e).len(), 1);
    check_invariants(&s);
}

#[test]
fn node_up_sends_exchange_reverse_alphabetical() {
    let mut s = Scope::new("a");
    assert!(s.new_node("b").is_empty(), "no groups, nothing sent");
    let a1 = t("a", 1);
    for g in ["/x/*", "pre", "m"] {
        s.join(g, a1.clone()).unwrap();
    }
    s.join("m", t("a", 2)).unwrap();
    let e = s.node_up("b", true);
    let expect = Request::Exchange {
        from: "a".into(),
        groups: vec![
            ("pre".into(), vec![a1.clone()]),
            ("m".into(), vec![t("a", 2), a1.clone()]),
            ("/x/*".into(), vec![a1.clone()]),
        ],
    };
    assert_eq!(
        e,
        vec![Effect::Cast {
            node: "b".into(),
            request: expect.clone()
        }]
    );
    assert!(s.node_up("h", false).is_empty());
    assert_eq!(
        s.new_node("h"),
        vec![Effect::Cast {
            node: "h".into(),
            request: expect
        }]
    );
    assert!(s.node_up("a", true).is_empty(), "own node ignored");
    assert!(s.new_node("a").is_empty());
}

#[test]
fn the_state_told_a_peer_lists_our_own_members_only() {
    let mut s = Scope::new("a");
    let (a1, b1, c1) = (t("a", 1), t("b", 1), t("c", 1));
    s.node_up("b", true);
    s.node_up("c", true);
    s.join("g", a1.clone()).unwrap();
    for (name, pid) in [("g", &b1), ("only_b", &b1), ("g", &c1)] {
        s.remote_request(
            pid.node(),
            Request::Join {
                name: name.into(),
                pid: pid.clone(),
            },
        );
    }
    // Our own members only: neither the peer's nor a third node's.
    let e = s.state_to("b", false);
    assert_eq!(
        casts(&e),
        vec![(
            "b".to_string(),
            Request::Exchange {
                from: "a".into(),
                groups: vec![("g".into(), vec![a1.clone()])],
            }
        )]
    );
    // With `theirs`, the peer's own too (a scope that came back empty is
    // repaired so), never a third node's.
    match &casts(&s.state_to("b", true))[0].1 {
        Request::Exchange { groups, .. } => assert_eq!(
            groups,
            &vec![
                ("only_b".into(), vec![b1.clone()]),
                ("g".into(), vec![b1.clone(), a1.clone()]),
            ]
        ),
        other => panic!("{other:?}"),
    }
    // The whole state (cpg's) from `new_node`.
    match &casts(&s.new_node("b"))[0].1 {
        Request::Exchange { groups, .. } => {
            assert_eq!(groups.iter().map(|(_, p)| p.len()).sum::<usize>(), 4)
        }
        other => panic!("{other:?}"),
    }
    // Nothing when we hold none of our own.
    let mut s = Scope::new("a");
    s.node_up("b", true);
    s.node_up("c", true);
    for pid in [&b1, &c1] {
        s.remote_request(
            pid.node(),
            Request::Join {
                name: "g".into(),
                pid: pid.clone(),
            },
        );
    }
    assert!(s.state_to("b", false).is_empty());
    assert!(s.state_to("c", false).is_empty());
    assert!(s.state_to("a", true).is_empty());
}

// ------------------------------------------------------------------
// Exchange merge

#[test]
fn exchange_from_unlistened_node_ignored() {
    let mut s = Scope::new("b");
    let a1 = t("a", 1);
    let groups = vec![("g".to_string(), vec![a1.clone()])];
    assert!(s.exchange("a", groups.clone()).is_empty(), "not connected");
    s.node_up("a", false);
    assert!(
        s.exchange("a", groups.clone()).is_empty(),
        "connected, not listened"
    );
    assert!(s.exchange("b", groups.clone()).is_empty(), "ourselves");
    assert!(s
        .remote_request(
            "a",
            Request::Exchange {
                from: "ghost".into(),
                groups: groups.clone()
            }
        )
        .is_empty());
    assert_eq!(s.group_count(), 0);
    s.node_up("a", true);
    let e = s.remote_request(
        "x",
        Request::Exchange {
            from: "a".into(),
            groups,
        },
    );
    assert_eq!(monitors(&e), vec![a1.clone()]);
    assert_eq!(history(&s, "g"), vec![a1]);
}

/// The live crafted-exchange experiment of findings (b), node b.
#[test]
fn findings_crafted_exchange() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    let (pa1, pa2, pb1, fake) = (t("a", 100), t("a", 101), t("b", 103), t("ghost", 5));
    // g: history [PB1, PA1, PA2, PA1]
    s.remote_request(
        "a",
        Request::Join {
            name: "g".into(),
            pid: pa1.clone(),
        },
    );
    s.remote_request(
        "a",
        Request::Join {
            name: "g".into(),
            pid: pa2.clone(),
        },
    );
    s.remote_request(
        "a",
        Request::Join {
            name: "g".into(),
            pid: pa1.clone(),
        },
    );
    s.join("g", pb1.clone()).unwrap();
    assert_eq!(
        history(&s, "g"),
        vec![pb1.clone(), pa1.clone(), pa2.clone(), pa1.clone()]
    );
    let e = s.exchange(
        "a",
        vec![
            (
                "g".into(),
                vec![
                    pb1.clone(),
                    pa2.clone(),
                    pb1.clone(),
                    pb1.clone(),
                    pa1.clone(),
                    fake.clone(),
                ],
            ),
            (
                "n".into(),
                vec![
                    pa1.clone(),
                    pb1.clone(),
                    fake.clone(),
                    pa2.clone(),
                    pa1.clone(),
                    fake.clone(),
                ],
            ),
        ],
    );
    assert_eq!(
        s.group_data("g").unwrap(),
        CpgData {
            local_count: 3,
            local: vec![pb1.clone(); 3],
            remote_count: 2,
            remote: vec![pa2.clone(), pa1.clone()],
            history: vec![
                pb1.clone(),
                pb1.clone(),
                pb1.clone(),
                pa2.clone(),
                pa1.clone()
            ],
        }
    );
    assert_eq!(
        s.group_data("n").unwrap(),
        CpgData {
            local_count: 1,
            local: vec![pb1.clone()],
            remote_count: 3,
            remote: vec![pa1.clone(), pa2.clone(), pa1.clone()],
            history: vec![pa1.clone(), pb1.clone(), pa2.clone(), pa1.clone()],
        }
    );
    assert_eq!(
        notifies(&e),
        vec![
            n("g", &pa1, Reason::LeaveRemote),
            n("g", &pb1, Reason::JoinLocal),
            n("g", &pb1, Reason::JoinLocal),
            n("n", &pa1, Reason::JoinRemote),
            n("n", &pa2, Reason::JoinRemote),
            n("n", &pb1, Reason::JoinLocal),
            n("n", &pa1, Reason::JoinRemote),
        ]
    );
    assert!(monitors(&e).is_empty(), "all already monitored");
    assert!(casts(&e).is_empty(), "merging never sends");
    assert!(!s.is_monitored(&fake));
    check_invariants(&s);
}

#[test]
fn exchange_new_group_filtered_by_connected_nodes() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    s.node_up("h", false);
    let (a1, c1, h1, b1) = (t("a", 1), t("c", 1), t("h", 1), t("b", 1));
    let e = s.exchange(
        "a",
        vec![
            ("x".into(), vec![c1.clone(), h1.clone()]),
            (
                "g".into(),
                vec![a1.clone(), c1.clone(), b1.clone(), a1.clone(), h1.clone()],
            ),
        ],
    );
    assert!(s.group("x").is_none(), "nothing reachable: not created");
    assert_eq!(
        s.group_data("g").unwrap(),
        CpgData {
            local_count: 1,
            local: vec![b1.clone()],
            remote_count: 2,
            remote: vec![a1.clone(), a1.clone()],
            history: vec![a1.clone(), b1.clone(), a1.clone()],
        }
    );
    // oldest first, one per copy; each pid monitored once
    assert_eq!(
        notifies(&e),
        vec![
            n("g", &a1, Reason::JoinRemote),
            n("g", &b1, Reason::JoinLocal),
            n("g", &a1, Reason::JoinRemote),
        ]
    );
    assert_eq!(monitors(&e), vec![a1.clone(), b1.clone()]);
    // relay: pids of another listened node are accepted too
    s.node_up("c", true);
    s.exchange("a", vec![("g".into(), vec![c1.clone()])]);
    assert_eq!(
        history(&s, "g"),
        vec![c1.clone(), a1.clone(), b1.clone(), a1.clone()]
    );
    check_invariants(&s);
}

#[test]
fn exchange_conflict_rules() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    let (a1, a2, b1) = (t("a", 1), t("a", 2), t("b", 1));
    s.remote_request(
        "a",
        Request::JoinCounts {
            counts: counts(&[("g", 3)]),
            pid: a1.clone(),
        },
    );
    s.join("g", b1.clone()).unwrap();
    s.join("g", b1.clone()).unwrap();
    s.remote_request(
        "a",
        Request::Join {
            name: "g".into(),
            pid: a2.clone(),
        },
    );
    // history [a2, b1, b1, a1, a1, a1]
    // incoming: a1 x1 (remove 2 newest a1), b1 x3 (add 1), a2 absent (untouched)
    let e = s.exchange(
        "a",
        vec![(
            "g".into(),
            vec![b1.clone(), a1.clone(), b1.clone(), b1.clone()],
        )],
    );
    assert_eq!(
        history(&s, "g"),
        vec![b1.clone(), a2.clone(), b1.clone(), b1.clone(), a1.clone()]
    );
    assert_eq!(
        notifies(&e),
        vec![
            n("g", &a1, Reason::LeaveRemote),
            n("g", &a1, Reason::LeaveRemote),
            n("g", &b1, Reason::JoinLocal)
        ]
    );
    // own pid forced down to the sender's count (newest copies removed)
    let e = s.exchange("a", vec![("g".into(), vec![b1.clone()])]);
    assert_eq!(notifies(&e), vec![n("g", &b1, Reason::LeaveLocal); 2]);
    assert_eq!(history(&s, "g"), vec![a2.clone(), b1.clone(), a1.clone()]);
    assert!(demonitors(&e).is_empty());
    check_invariants(&s);
}

#[test]
fn findings_reconnect_after_netsplit() {
    let mut a = Scope::new("a");
    let mut b = Scope::new("b");
    let (pa1, pb1) = (t("a", 1), t("b", 1));
    b.join_counts(&counts(&[("g", 3)]), pb1.clone()).unwrap();
    a.join_counts(&counts(&[("g", 2)]), pa1.clone()).unwrap();
    let ea = a.node_up("b", true);
    let eb = b.node_up("a", true);
    for (node, req) in casts(&ea) {
        assert_eq!(node, "b");
        b.remote_request("a", req);
    }
    for (_, req) in casts(&eb) {
        a.remote_request("b", req);
    }
    assert_eq!(
        history(&b, "g"),
        vec![
            pa1.clone(),
            pa1.clone(),
            pb1.clone(),
            pb1.clone(),
            pb1.clone()
        ]
    );
    assert_eq!(
        history(&a, "g"),
        vec![
            pb1.clone(),
            pb1.clone(),
            pb1.clone(),
            pa1.clone(),
            pa1.clone()
        ]
    );
}

/// An exchange into a scope with notifications off gives the same state and
/// the same monitors, and no `Notify`; a group arriving with pids that are
/// not taken (a third node's) keeps only the copies taken.
#[test]
fn exchange_without_notifications_and_with_refused_pids() {
    let groups = vec![
        ("g".to_string(), vec![t("a", 1), t("c", 1), t("c", 2)]),
        ("h".to_string(), vec![t("a", 2), t("a", 1), t("a", 2)]),
    ];
    let mut on = Scope::new("b");
    let mut off = Scope::new("b");
    off.set_notify(false);
    let [e_on, e_off] = [&mut on, &mut off].map(|s| {
        s.node_up("a", true);
        s.remote_request(
            "a",
            Request::Exchange {
                from: "a".into(),
                groups: groups.clone(),
            },
        )
    });
    assert_eq!(notifies(&e_on).len(), 4);
    assert!(notifies(&e_off).is_empty());
    assert_eq!(monitors(&e_on), monitors(&e_off));
    for g in ["g", "h"] {
        assert_eq!(on.group_data(g), off.group_data(g));
    }
    // "g" kept one of its three copies (c@ is not a listened node)
    assert_eq!(off.group_data("g").unwrap().history, vec![t("a", 1)]);
    check_invariants(&off);
}

/// A node down done in parts (as the scope task does, a write lock each)
/// gives the effects and the state of one `node_down`.
#[test]
fn node_down_in_parts_equals_node_down() {
    let mut whole = Scope::new("b");
    whole.node_up("a", true);
    whole.node_up("c", true);
    for i in 1..=20u32 {
        for g in ["g", "h", "i"].iter().take(1 + (i % 3) as usize) {
            let pid = t(if i % 4 == 0 { "c" } else { "a" }, i);
            whole.remote_request(
                "x",
                Request::Join {
                    name: (*g).into(),
                    pid,
                },
            );
        }
    }
    let mut parts = whole.clone();
    let expect = whole.node_down("a");
    let pids = parts.node_down_start("a");
    assert_eq!(pids.len(), 15);
    let mut got = Vec::new();
    for part in pids.chunks(4) {
        got.extend(parts.node_members_down(part));
    }
    assert_eq!(got, expect);
    assert!(!parts.is_listened("a"));
    for g in ["g", "h", "i"] {
        assert_eq!(parts.group_data(g), whole.group_data(g));
    }
    check_invariants(&parts);
}

/// A restarted scope task drops a connected peer's members but keeps it a
/// peer (`members_of_node`, then `node_members_down`): a local write made
/// meanwhile still casts to it, so that a leave is not lost on it (the
/// exchange that follows only adds).
#[test]
fn members_dropped_the_node_stays_a_peer_and_gets_our_leaves() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    let (a1, b1) = (t("a", 1), t("b", 1));
    s.remote_request(
        "a",
        Request::Join {
            name: "g".into(),
            pid: a1.clone(),
        },
    );
    s.join("g", b1.clone()).unwrap();
    let pids = s.members_of_node("a");
    assert_eq!(pids, vec![a1.clone()]);
    let e = s.node_members_down(&pids);
    assert_eq!(
        notifies(&e),
        vec![n("g", &a1, Reason::Exit(NODEDOWN_REASON.into()))]
    );
    assert_eq!(history(&s, "g"), vec![b1.clone()]);
    assert!(s.is_listened("a"));
    let e = s.leave("g", &b1).unwrap();
    assert_eq!(
        casts(&e),
        vec![(
            "a".to_string(),
            Request::Leave {
                name: "g".into(),
                pid: b1.clone()
            }
        )]
    );
    // our own node has no members to drop
    assert!(s.members_of_node("b").is_empty());
    check_invariants(&s);
}

#[test]
fn exchange_of_member_pids_accepts_by_node_as_names_do() {
    // `MemberPid` answers `same_node` by its interned node id, which the
    // exchange uses to skip the node lookups for a run of pids of one
    // node: interleaved nodes must still be told apart.
    use crate::cpg::MemberPid;
    let p = |node: &str, id: u32| MemberPid::new(node, id, 0, 1).unwrap();
    let (a1, a2, c1, h1, b1) = (
        p("a@x", 1),
        p("a@x", 2),
        p("c@x", 1),
        p("h@x", 1),
        p("b@x", 1),
    );
    assert!(a1.same_node(&a2) && !a1.same_node(&c1));
    let mut s: Scope<MemberPid> = Scope::new("b@x");
    s.node_up("a@x", true);
    s.node_up("h@x", false);
    s.exchange(
        "a@x",
        vec![
            ("g".into(), vec![a1, c1, a2, h1, b1, h1, a1]),
            ("k".into(), vec![h1, c1]),
            ("m".into(), vec![c1, a2]),
        ],
    );
    let members = |g: &str| s.get_members(g, None).ok().map(|(_, v)| v.to_vec());
    assert_eq!(members("g"), Some(vec![a1, a2, b1, a1]));
    assert_eq!(members("k"), None, "no pid of a listened node: not created");
    assert_eq!(members("m"), Some(vec![a2]));
}

// ------------------------------------------------------------------
// A polled exchange (a node read by polls): its order too

/// Joins, in order, one copy each of `pids` (remote, cast by their nodes).
fn joined(s: &mut Scope<T>, name: &str, pids: &[T]) {
    for p in pids {
        s.remote_request(
            p.node,
            Request::Join {
                name: name.into(),
                pid: p.clone(),
            },
        );
    }
}

#[test]
fn polled_exchange_puts_a_rejoined_copy_at_the_newest_end() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    s.node_up("c", true);
    let (a1, a2, c1) = (t("a", 1), t("a", 2), t("c", 1));
    joined(&mut s, "g", &[a1.clone(), c1.clone(), a2.clone()]);
    assert_eq!(history(&s, "g"), vec![a2.clone(), c1.clone(), a1.clone()]);
    // `a` left a1 and joined it again: its history lists [a1, a2]. A plain
    // exchange keeps the counts, and so the order.
    let listed = vec![("g".to_string(), vec![a1.clone(), a2.clone()])];
    let e = s.exchange("a", listed.clone());
    assert!(notifies(&e).is_empty());
    assert_eq!(history(&s, "g"), vec![a2.clone(), c1.clone(), a1.clone()]);
    // A poll's answer moves a1 to the newest end, as its casts would have.
    let e = s.exchange_polled("a", listed.clone());
    assert_eq!(history(&s, "g"), vec![a1.clone(), a2.clone(), c1.clone()]);
    assert_eq!(
        notifies(&e),
        vec![
            n("g", &a1, Reason::LeaveRemote),
            n("g", &a1, Reason::JoinRemote)
        ]
    );
    assert!(monitors(&e).is_empty() && demonitors(&e).is_empty());
    // In order now: the same answer again changes nothing.
    assert!(s.exchange_polled("a", listed).is_empty());
    assert_eq!(history(&s, "g"), vec![a1.clone(), a2.clone(), c1.clone()]);
    check_invariants(&s);
}

#[test]
fn polled_exchange_after_a_leave_of_one_copy_of_several() {
    // `join A, B, A`, then `leave A` on `a`: cpg leaves the oldest copy,
    // its history is [A, B]; the merge alone drops the newest: [B, A].
    let mut s = Scope::new("b");
    s.node_up("a", true);
    let (a1, a2) = (t("a", 1), t("a", 2));
    joined(&mut s, "k", &[a1.clone(), a2.clone(), a1.clone()]);
    let listed = vec![("k".to_string(), vec![a1.clone(), a2.clone()])];
    let mut plain = s.clone();
    plain.exchange("a", listed.clone());
    assert_eq!(history(&plain, "k"), vec![a2.clone(), a1.clone()]);
    s.exchange_polled("a", listed);
    assert_eq!(history(&s, "k"), vec![a1.clone(), a2.clone()]);
    check_invariants(&s);
}

#[test]
fn polled_exchange_leaves_a_capped_group_as_merged() {
    // The cap keeps fewer copies than listed: no order to follow.
    let mut s = Scope::new("b");
    s.set_max_copies(2);
    s.node_up("a", true);
    let (a1, a2) = (t("a", 1), t("a", 2));
    joined(&mut s, "g", &[a1.clone(), a2.clone()]);
    s.exchange_polled(
        "a",
        vec![(
            "g".into(),
            vec![a2.clone(), a1.clone(), a1.clone(), a1.clone()],
        )],
    );
    assert_eq!(history(&s, "g"), vec![a1.clone(), a2.clone(), a1.clone()]);
    check_invariants(&s);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever order a poll lists `a`'s copies in, a polled exchange
    /// leaves them in that order, keeps the other nodes' copies in theirs,
    /// moves no more copies than it must (the oldest copies already in
    /// order stay), and notifies a leave and a join per copy moved.
    #[test]
    fn polled_exchange_follows_any_order(
        before in proptest::collection::vec((0u32..4, any::<bool>()), 1..24),
        shuffle in proptest::collection::vec(any::<prop::sample::Index>(), 24),
    ) {
        let mut s = Scope::new("b");
        s.node_up("a", true);
        s.node_up("c", true);
        let pids: Vec<T> = before
            .iter()
            .map(|&(id, on_a)| t(if on_a { "a" } else { "c" }, id))
            .collect();
        joined(&mut s, "g", &pids);
        let was = history(&s, "g");
        let of_a = |h: &[T]| h.iter().filter(|p| p.node == "a").cloned().collect::<Vec<_>>();
        let of_c = |h: &[T]| h.iter().filter(|p| p.node == "c").cloned().collect::<Vec<_>>();
        let mut listed = of_a(&was);
        for (i, ix) in shuffle.iter().enumerate().take(listed.len()) {
            let j = ix.index(listed.len());
            listed.swap(i, j);
        }
        let e = s.exchange_polled("a", vec![("g".into(), listed.clone())]);
        let now = history(&s, "g");
        prop_assert_eq!(of_a(&now), listed.clone());
        prop_assert_eq!(of_c(&now), of_c(&was));
        // The copies kept in place: the longest run of the listed oldest
        // copies found in order in ours.
        let moved = notifies(&e).len() / 2;
        let ours = of_a(&was);
        let (mut i, mut j) = (listed.len(), ours.len());
        while i > 0 && j > 0 {
            if listed[i - 1] == ours[j - 1] {
                i -= 1;
            }
            j -= 1;
        }
        prop_assert_eq!(moved, i);
        prop_assert_eq!(&now[..moved], &listed[..moved]);
        check_invariants(&s);
    }
}

/// The task's `drop_unlisted` (`server::poll`), over the pure scope: the
/// copies of `origin`'s pids that its polled view no longer lists leave.
fn drop_unlisted(s: &mut Scope<T>, origin: &str, groups: &[(String, Vec<T>)]) {
    for (pid, counts) in s.unlisted(origin, groups) {
        s.remote_request(origin, Request::LeaveCounts { counts, pid });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A node read by polls only (a BEAM scope at `visible`): its writes,
    /// with a poll now and then (its dropped copies, then its view merged
    /// as a polled exchange). After every poll our view of its members is
    /// its own, order included.
    #[test]
    fn polls_alone_follow_a_node(
        steps in proptest::collection::vec((0u8..6, 0u32..4, 0usize..3), 1..80),
    ) {
        const NAMES: [&str; 3] = ["g", "b*c", "h"];
        let mut a: Scope<T> = Scope::new("a");
        let mut s = Scope::new("b");
        s.node_up("a", true);
        for (op, id, g) in steps {
            let (pid, name) = (t("a", id), NAMES[g]);
            let _ = match op {
                0 | 1 => a.join(name, pid),
                2 => a.leave(name, &pid),
                3 => a.join_counts(&counts(&[(name, 2), ("h", 1)]), pid),
                4 => a.leave_all(&pid),
                _ => {
                    let view = a.exchange_groups();
                    drop_unlisted(&mut s, "a", &view);
                    s.exchange_polled("a", view.clone());
                    for (name, pids) in &view {
                        prop_assert_eq!(&history(&s, name.as_str()), pids, "{}", name);
                    }
                    prop_assert_eq!(s.which_groups().len(), view.len());
                    check_invariants(&s);
                    Ok(Vec::new())
                }
            };
        }
    }
}

#[test]
fn polled_exchange_takes_only_the_polled_nodes_pids() {
    // `c` lists a member of `a` that `a` itself dropped (a leave still on
    // its way to `c`): a poll of `c` does not bring it back.
    let mut s = Scope::new("b");
    s.node_up("a", true);
    s.node_up("c", true);
    let (a1, c1) = (t("a", 1), t("c", 1));
    let e = s.exchange_polled("c", vec![("g".into(), vec![a1.clone(), c1.clone()])]);
    assert_eq!(history(&s, "g"), vec![c1.clone()]);
    assert_eq!(monitors(&e), vec![c1.clone()]);
    s.exchange_polled("c", vec![("h".into(), vec![a1.clone()])]);
    assert!(
        s.group_data("h").is_none(),
        "no group of another node's pids"
    );
    // A plain exchange (a full peer's) takes them, as cpg's merge does.
    s.exchange("c", vec![("g".into(), vec![a1.clone(), c1.clone()])]);
    assert_eq!(history(&s, "g"), vec![a1.clone(), c1.clone()]);
    check_invariants(&s);
}

#[test]
fn polled_exchange_puts_its_copies_among_the_others_as_listed() {
    // `a` (polled) joins P1, `c` (casting) P2, `a` P3: every node that got
    // the casts holds [P3, P2, P1]. We got P2 at once and the others with
    // the next poll, which the merge puts at the newest end.
    let mut s = Scope::new("b");
    s.node_up("a", true);
    s.node_up("c", true);
    let (p1, p2, p3) = (t("a", 1), t("c", 2), t("a", 3));
    joined(&mut s, "ord", std::slice::from_ref(&p2));
    let listed = vec![("ord".to_string(), vec![p3.clone(), p2.clone(), p1.clone()])];
    let e = s.exchange_polled("a", listed.clone());
    assert_eq!(history(&s, "ord"), vec![p3.clone(), p2.clone(), p1.clone()]);
    // Two joins notified, nothing left.
    let mut joins = notifies(&e);
    joins.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
    assert_eq!(
        joins,
        vec![
            n("ord", &p1, Reason::JoinRemote),
            n("ord", &p3, Reason::JoinRemote)
        ]
    );
    assert!(s.exchange_polled("a", listed).is_empty());
    assert_eq!(history(&s, "ord"), vec![p3.clone(), p2.clone(), p1.clone()]);
    // A copy of another node that the polled node does not list (not yet
    // told, or of a node it is not connected to) bounds nothing: P4 stays
    // the newest, and `a`'s copies where they were.
    let p4 = t("d", 4);
    s.node_up("d", true);
    joined(&mut s, "ord", std::slice::from_ref(&p4));
    let listed = vec![("ord".to_string(), vec![p3.clone(), p2.clone(), p1.clone()])];
    assert!(s.exchange_polled("a", listed).is_empty());
    assert_eq!(history(&s, "ord"), vec![p4, p3, p2, p1]);
    check_invariants(&s);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A node `a` read by polls (a BEAM scope at `visible`) and a node `c`
    /// whose writes are cast (at `all`) to both `a` and us, in one group.
    /// After every poll of `a`, our history of each group is `a`'s, order
    /// included: `a`'s copies among `c`'s where `a` holds them.
    #[test]
    fn polls_and_casts_follow_a_nodes_order(
        steps in proptest::collection::vec((0u8..9, 0u32..4, 0usize..2), 1..80),
    ) {
        const NAMES: [&str; 2] = ["g", "h"];
        let mut a: Scope<T> = Scope::new("a");
        a.node_up("c", true);
        let mut s = Scope::new("b");
        s.node_up("a", true);
        s.node_up("c", true);
        for (op, id, g) in steps {
            let name = NAMES[g];
            let (pa, pc) = (t("a", id), t("c", id));
            let _ = match op {
                0 | 1 => a.join(name, pa),
                2 => a.leave(name, &pa),
                3 => a.leave_all(&pa),
                4..=6 => {
                    let r = match op {
                        4 | 5 => Request::Join { name: name.into(), pid: pc },
                        _ => Request::Leave { name: name.into(), pid: pc },
                    };
                    a.remote_request("c", r.clone());
                    s.remote_request("c", r);
                    Ok(Vec::new())
                }
                _ => {
                    let view = a.exchange_groups();
                    drop_unlisted(&mut s, "a", &view);
                    let before: Vec<Vec<T>> = NAMES.iter().map(|g| history(&s, g)).collect();
                    let e = s.exchange_polled("a", view.clone());
                    for (name, was) in NAMES.iter().zip(before) {
                        prop_assert_eq!(history(&s, name), history(&a, name), "{}", name);
                        // Each copy that came or went notified, and each
                        // moved one a leave and a join: the notifications
                        // of a pid add up to its change.
                        for p in history(&s, name).iter().chain(&was) {
                            let count = |h: &[T]| h.iter().filter(|q| *q == p).count() as isize;
                            let net: isize = notifies(&e)
                                .iter()
                                .filter(|(g, q, _)| g == name && q == p)
                                .map(|(_, _, r)| if r.is_join() { 1 } else { -1 })
                                .sum();
                            prop_assert_eq!(net, count(&history(&s, name)) - count(&was), "{} {:?}", name, p);
                        }
                    }
                    check_invariants(&s);
                    Ok(Vec::new())
                }
            };
        }
    }
}

/// A name that is no valid pattern, refused to a local join, is stored
/// when a peer's scope (a genuine one took it) casts it, and listed. The
/// lookups answer as genuine trie with these three keys: a name holding a
/// wildcard finds nothing (`badarg` there), `xyz` finds `x*`, and where
/// genuine's scope crashes (`abc`, `q`: `badmatch` on `*?`) ours finds no
/// group.
#[test]
fn a_peers_invalid_pattern_is_stored_listed_and_crashes_no_lookup() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    let (a1, a2) = (t("a", 1), t("a", 2));
    assert_eq!(
        s.join("a**", t("b", 1)),
        Err(WriteError::InvalidName("a**".into()))
    );
    for (name, pid) in [("a**", &a1), ("*?", &a1), ("x*", &a2)] {
        s.remote_request(
            "a",
            Request::Join {
                name: name.into(),
                pid: pid.clone(),
            },
        );
    }
    let mut groups = s.which_groups();
    groups.sort();
    assert_eq!(groups, vec!["*?", "a**", "x*"]);
    assert_eq!(s.which_groups_of(&a1).len(), 2);
    for name in ["a**", "*?", "x*", "abc", "q"] {
        assert!(
            matches!(s.get_members(name, None), Err(ReadError::NoSuchGroup(_))),
            "{name}"
        );
    }
    assert_eq!(s.get_members("xyz", None).unwrap().0, "x*");
    check_invariants(&s);
}
