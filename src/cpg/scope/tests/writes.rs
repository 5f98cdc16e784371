use super::*;

// ------------------------------------------------------------------
// Local writes

#[test]
fn local_join_effects() {
    let mut s = Scope::new("a");
    assert!(s.node_up("b", true).is_empty()); // no groups yet
    s.node_up("h", false);
    let a1 = t("a", 1);
    let e = s.join("g", a1.clone()).unwrap();
    assert_eq!(
        e,
        vec![
            Effect::Notify {
                name: "g".into(),
                pid: a1.clone(),
                reason: Reason::JoinLocal
            },
            Effect::Monitor(a1.clone()),
            Effect::Cast {
                node: "b".into(),
                request: Request::Join {
                    name: "g".into(),
                    pid: a1.clone()
                }
            },
        ]
    );
    // second join: no monitor
    let e = s.join("g", a1.clone()).unwrap();
    assert!(monitors(&e).is_empty());
    let e = s.join("h", a1.clone()).unwrap();
    assert!(monitors(&e).is_empty());
    assert_eq!(s.which_groups_of(&a1), vec!["g", "h"]);
    assert_eq!(s.which_groups_counts(&a1), counts(&[("g", 2), ("h", 1)]));
    let d = s.group_data("g").unwrap();
    assert_eq!((d.local_count, d.remote_count), (2, 0));
    check_invariants(&s);
}

#[test]
fn local_write_errors() {
    let mut s = Scope::new("a");
    s.node_up("b", true);
    let a1 = t("a", 1);
    let b1 = t("b", 1);
    assert_eq!(s.join("g", b1.clone()), Err(WriteError::NotLocal));
    assert_eq!(
        s.join("", a1.clone()),
        Err(WriteError::InvalidName(String::new()))
    );
    assert_eq!(
        s.join("a**", a1.clone()),
        Err(WriteError::InvalidName("a**".into()))
    );
    assert_eq!(s.join_counts(&[], a1.clone()), Ok(vec![]));
    assert_eq!(s.join_counts(&[], b1.clone()), Err(WriteError::NotLocal));
    assert_eq!(
        s.join_counts(&counts(&[("g", 1), ("h", 0)]), a1.clone()),
        Err(WriteError::InvalidCount {
            name: "h".into(),
            count: 0
        })
    );
    assert_eq!(s.group_count(), 0, "nothing done on error");
    assert_eq!(s.leave("g", &a1), Err(WriteError::NotMember));
    assert_eq!(s.leave_all(&a1), Err(WriteError::NotMember));
    assert_eq!(
        s.leave_counts(&counts(&[("g", 1)]), &a1),
        Err(WriteError::NotMember)
    );
    s.join("g", a1.clone()).unwrap();
    assert_eq!(s.leave("h", &a1), Err(WriteError::NotMember));
    assert_eq!(s.leave("g", &b1), Err(WriteError::NotLocal));
    assert_eq!(s.leave_all(&b1), Err(WriteError::NotLocal));
    assert_eq!(
        s.leave_counts(&counts(&[("g", 1), ("h", 1)]), &a1),
        Err(WriteError::NotMember)
    );
    assert_eq!(
        s.leave_counts(&counts(&[("g", 0)]), &a1),
        Err(WriteError::InvalidCount {
            name: "g".into(),
            count: 0
        })
    );
    assert_eq!(s.leave_counts(&[], &a1), Ok(vec![]));
    assert_eq!(history(&s, "g"), vec![a1.clone()]);
    // a pattern name is a valid name to join
    assert!(s.join("a/*", a1.clone()).is_ok());
}

#[test]
fn findings_single_node_sequence() {
    let mut s = Scope::new("n");
    let (a, b, c) = (t("n", 1), t("n", 2), t("n", 3));
    s.join("g", a.clone()).unwrap();
    s.join("g", b.clone()).unwrap();
    s.join("g", a.clone()).unwrap();
    let e = s.join_counts(&counts(&[("g", 2)]), c.clone()).unwrap();
    // one notification per group per request, even for count 2
    assert_eq!(notifies(&e), vec![n("g", &c, Reason::JoinLocal)]);
    assert_eq!(
        s.group_data("g").unwrap(),
        CpgData {
            local_count: 5,
            local: vec![c.clone(), c.clone(), a.clone(), b.clone(), a.clone()],
            remote_count: 0,
            remote: vec![],
            history: vec![c.clone(), c.clone(), a.clone(), b.clone(), a.clone()],
        }
    );
    s.leave("g", &a).unwrap();
    assert_eq!(
        history(&s, "g"),
        vec![c.clone(), c.clone(), a.clone(), b.clone()]
    );
    s.join("g", b.clone()).unwrap();
    assert_eq!(
        history(&s, "g"),
        vec![b.clone(), c.clone(), c.clone(), a.clone(), b.clone()]
    );
    let e = s.leave_counts(&counts(&[("g", 5)]), &c).unwrap();
    assert_eq!(notifies(&e), vec![n("g", &c, Reason::LeaveLocal); 2]);
    assert_eq!(demonitors(&e), vec![c.clone()]);
    assert_eq!(history(&s, "g"), vec![b.clone(), a.clone(), b.clone()]);
    let e = s.leave_all(&a).unwrap();
    assert_eq!(demonitors(&e), vec![a.clone()]);
    assert_eq!(history(&s, "g"), vec![b.clone(), b.clone()]);
    assert!(!s.is_monitored(&a));
    check_invariants(&s);
}

#[test]
fn leave_last_copy_demonitors_and_deletes_group() {
    let mut s = Scope::new("a");
    s.node_up("b", true);
    let a1 = t("a", 1);
    s.join("g", a1.clone()).unwrap();
    s.join("h", a1.clone()).unwrap();
    s.join("h", a1.clone()).unwrap();
    let e = s.leave("g", &a1).unwrap();
    assert_eq!(notifies(&e), vec![n("g", &a1, Reason::LeaveLocal)]);
    assert!(demonitors(&e).is_empty(), "still in h");
    assert_eq!(s.group("g").map(|_| ()), None, "empty group erased");
    assert_eq!(
        casts(&e),
        vec![(
            "b".into(),
            Request::Leave {
                name: "g".into(),
                pid: a1.clone()
            }
        )]
    );
    let e = s.leave("h", &a1).unwrap();
    assert!(demonitors(&e).is_empty(), "one copy left in h");
    let e = s.leave("h", &a1).unwrap();
    assert_eq!(demonitors(&e), vec![a1.clone()]);
    assert_eq!(s.group_count(), 0);
    assert_eq!(s.which_groups_of(&a1), Vec::<String>::new());
    check_invariants(&s);
}

#[test]
fn local_joins_over_max_copies_refused() {
    let mut s = Scope::new("a");
    assert_eq!(s.max_copies(), DEFAULT_MAX_COPIES);
    let a1 = t("a", 1);
    // Refused before anything is allocated for it.
    let e = s
        .join_counts(&counts(&[("x", 10_000_000_000)]), a1.clone())
        .unwrap_err();
    assert!(matches!(
        e,
        WriteError::TooManyCopies {
            count: 10_000_000_000,
            ..
        }
    ));
    assert_eq!(s.group_count(), 0);
    s.set_max_copies(5);
    s.join_counts(&counts(&[("g", 4)]), a1.clone()).unwrap();
    s.join("g", a1.clone()).unwrap();
    assert!(matches!(
        s.join("g", a1.clone()),
        Err(WriteError::TooManyCopies { max: 5, .. })
    ));
    // Repeated names add up; so does the whole request.
    for bad in [&[("h", 3), ("h", 3)][..], &[("h", 3), ("i", 3)][..]] {
        assert!(matches!(
            s.join_counts(&counts(bad), a1.clone()),
            Err(WriteError::TooManyCopies { .. })
        ));
    }
    assert_eq!(s.join_count("g", &a1), 5);
    assert_eq!(s.join_count("h", &a1), 0);
    // Another pid has its own allowance.
    s.join_counts(&counts(&[("g", 5)]), t("a", 2)).unwrap();
    check_invariants(&s);
}

#[test]
fn remote_joins_over_max_copies_ignored() {
    let mut s = Scope::new("a");
    s.node_up("b", true);
    let b1 = t("b", 1);
    let huge = Request::JoinCounts {
        counts: counts(&[("x", 10_000_000_000)]),
        pid: b1.clone(),
    };
    assert!(s.check_remote(&huge).is_err());
    assert!(s.remote_request("b", huge).is_empty());
    assert_eq!(s.group_count(), 0);
    s.set_max_copies(3);
    let join = || Request::Join {
        name: "g".into(),
        pid: b1.clone(),
    };
    for _ in 0..3 {
        assert!(!s.remote_request("b", join()).is_empty());
    }
    assert!(s.check_remote(&join()).is_err());
    assert!(s.remote_request("b", join()).is_empty());
    assert_eq!(s.join_count("g", &b1), 3);
    // An exchange gives a pid no more than the cap either, for a new
    // group or one we have.
    let many = vec![b1.clone(); 7];
    s.exchange("b", vec![("g".into(), many.clone()), ("n".into(), many)]);
    assert_eq!(s.join_count("g", &b1), 3);
    assert_eq!(s.join_count("n", &b1), 3);
    check_invariants(&s);
}

#[test]
fn the_scope_holds_no_more_than_max_total_copies() {
    let mut s = Scope::new("a");
    s.node_up("b", true);
    assert_eq!(s.max_total_copies(), DEFAULT_MAX_TOTAL_COPIES);
    s.set_max_total_copies(10);
    let (a1, b1, b2) = (t("a", 1), t("b", 1), t("b", 2));
    // What used to grow the node by tens of MB a cast: join_counts into a
    // new group each time, each under the per-group cap.
    for i in 0..5 {
        let cast = Request::JoinCounts {
            counts: counts(&[(&format!("g{i}"), 3)]),
            pid: b1.clone(),
        };
        let full = s.check_remote(&cast).is_err();
        assert_eq!(full, i >= 3, "cast {i}");
        assert_eq!(s.remote_request("b", cast).is_empty(), full);
    }
    assert_eq!(s.total_copies(), 9);
    assert!(matches!(
        s.check_remote(&Request::Join {
            name: "x".into(),
            pid: b2.clone()
        }),
        Ok(())
    ));
    assert!(matches!(
        s.join_counts(&counts(&[("l", 2)]), a1.clone()),
        Err(WriteError::ScopeFull { count: 2, max: 10 })
    ));
    s.join("l", a1.clone()).unwrap();
    assert_eq!(s.total_copies(), 10);
    assert!(matches!(
        s.join("l", a1.clone()),
        Err(WriteError::ScopeFull { count: 1, max: 10 })
    ));
    // An exchange adds no copy past it, to a new group or one we have.
    s.exchange("b", vec![("n".into(), vec![b2.clone(); 4])]);
    s.exchange("b", vec![("g0".into(), vec![b1.clone(); 6])]);
    assert_eq!(s.group_count(), 4);
    assert_eq!(s.join_count("g0", &b1), 3);
    // Copies that leave make room again; an exchange that lowers a count
    // always applies.
    s.exchange("b", vec![("g0".into(), vec![b1.clone()])]);
    assert_eq!(s.total_copies(), 8);
    // A count raised as far as the room goes, in a group we have.
    s.exchange("b", vec![("g0".into(), vec![b1.clone(); 6])]);
    assert_eq!((s.join_count("g0", &b1), s.total_copies()), (3, 10));
    s.exchange("b", vec![("g0".into(), vec![b1.clone()])]);
    s.exchange("b", vec![("n".into(), vec![b2.clone(); 4])]);
    assert_eq!(s.join_count("n", &b2), 2);
    assert_eq!(s.total_copies(), 10);
    s.member_down(&b2, "normal");
    s.node_down("b");
    assert_eq!(s.total_copies(), 1);
    check_invariants(&s);
}

#[test]
fn leave_counts_duplicates_are_merged() {
    let mut s = Scope::new("a");
    s.node_up("b", true);
    let a1 = t("a", 1);
    s.join_counts(&counts(&[("g", 3)]), a1.clone()).unwrap();
    let e = s.leave_counts(&counts(&[("g", 1), ("g", 1)]), &a1).unwrap();
    assert_eq!(notifies(&e).len(), 2);
    assert_eq!(s.join_count("g", &a1), 1);
    assert_eq!(
        casts(&e),
        vec![(
            "b".into(),
            Request::LeaveCounts {
                counts: counts(&[("g", 2)]),
                pid: a1.clone()
            }
        )]
    );
}

#[test]
fn leave_all_local() {
    let mut s = Scope::new("a");
    s.node_up("b", true);
    s.node_up("c", true);
    let (a1, a2) = (t("a", 1), t("a", 2));
    s.join_counts(&counts(&[("z", 2), ("g", 1)]), a1.clone())
        .unwrap();
    s.join("g", a2.clone()).unwrap();
    let e = s.leave_all(&a1).unwrap();
    assert_eq!(e[0], Effect::Demonitor(a1.clone(), None));
    // names in sorted order, one notification per copy
    assert_eq!(
        notifies(&e),
        vec![
            n("g", &a1, Reason::LeaveLocal),
            n("z", &a1, Reason::LeaveLocal),
            n("z", &a1, Reason::LeaveLocal)
        ]
    );
    assert_eq!(
        casts(&e),
        vec![
            ("b".into(), Request::LeaveAll { pid: a1.clone() }),
            ("c".into(), Request::LeaveAll { pid: a1.clone() })
        ]
    );
    assert_eq!(s.which_groups(), vec!["g"]);
    check_invariants(&s);
}

#[test]
fn a_pid_in_many_groups_keeps_its_names_in_order() {
    // Crosses the index's small-vector limit both ways.
    let mut s = Scope::new("a");
    let a1 = t("a", 1);
    let names: Vec<String> = (0..20).map(|i| format!("g{:02}", (i * 7) % 20)).collect();
    for (i, n) in names.iter().enumerate() {
        let e = s.join(n, a1.clone()).unwrap();
        assert_eq!(monitors(&e).len(), usize::from(i == 0));
        check_invariants(&s);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(s.which_groups_of(&a1), sorted);
    for (i, n) in names.iter().enumerate().rev() {
        let e = s.leave(n, &a1).unwrap();
        assert_eq!(demonitors(&e).len(), usize::from(i == 0));
        check_invariants(&s);
    }
    assert!(s.which_groups_of(&a1).is_empty());
}
