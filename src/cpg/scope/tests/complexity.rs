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
