use super::*;

// ------------------------------------------------------------------
// Complexity: must run quickly even in debug builds.

#[test]
fn complexity_large_groups() {
    const N: u32 = 100_000;
    let mut s = Scope::new("n");
    // one pid joins 100k distinct groups, then leaves them all
    let p = t("n", 0);
    for i in 0..N {
        s.join(&format!("g{i}"), p.clone()).unwrap();
    }
    assert_eq!(s.group_count(), N as usize);
    let e = s.leave_all(&p).unwrap();
    assert_eq!(e.len(), N as usize + 1);
    assert_eq!(s.group_count(), 0);
    // 100k distinct pids join one group, then leave one by one
    for i in 1..=N {
        s.join("big", t("n", i)).unwrap();
    }
    for i in 1..=N {
        s.leave("big", &t("n", i)).unwrap();
    }
    assert_eq!(s.group_count(), 0);
    // 10k local and 10k remote members of one group die / go down,
    // newest first (the worst order for list-based removal)
    s.node_up("peer", true);
    for i in 1..=10_000 {
        s.join_counts(&counts(&[("d", 2)]), t("n", i)).unwrap();
        s.remote_request(
            "peer",
            Request::Join {
                name: "d".into(),
                pid: t("peer", i),
            },
        );
    }
    for i in (1..=10_000).rev() {
        assert_eq!(s.member_down(&t("n", i), "killed").len(), 2);
    }
    assert_eq!(s.node_down("peer").len(), 10_000);
    assert_eq!(s.group_count(), 0);
    assert!(s.pids.is_empty());
}

/// One request naming 100k groups (a peer's `join_counts` cast, a call's
/// `leave_counts`): linear, where the check of the names so far scanned
/// them (100k squared: minutes in a debug build).
#[test]
fn complexity_one_request_of_many_names() {
    const N: usize = 100_000;
    let mut s = Scope::new("n");
    s.node_up("peer", true);
    let names: Vec<(String, usize)> = (0..N).map(|i| (format!("g{i}"), 1)).collect();
    let q = t("peer", 1);
    let request = Request::JoinCounts {
        counts: names.clone(),
        pid: q.clone(),
    };
    assert_eq!(s.check_remote(&request), Ok(()));
    s.remote_request("peer", request);
    assert_eq!(s.group_count(), N);
    let p = t("n", 0);
    s.join_counts(&names, p.clone()).unwrap();
    // A name twice counts twice.
    let mut twice = names.clone();
    twice.push(("g0".into(), 1));
    s.join_counts(&twice, p.clone()).unwrap();
    assert_eq!(s.join_count("g0", &p), 3);
    s.leave_counts(&twice, &p).unwrap();
    assert_eq!((s.join_count("g0", &p), s.join_count("g1", &p)), (1, 1));
    assert_eq!(s.group_count(), N);
}
