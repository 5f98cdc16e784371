use super::*;

// ------------------------------------------------------------------
// Map storage (any term as a name, exact lookups)

fn tn(t: crate::term::Term) -> TermName {
    TermName::new(t)
}

fn tuple_name() -> TermName {
    use crate::term::{atom, tuple};
    tn(tuple(vec![atom("my"), atom("tuple"), atom("name")]))
}

#[test]
fn map_storage_local_writes_any_term() {
    let mut s = Scope::new_map("a");
    s.node_up("b", true);
    let a1 = t("a", 1);
    let names = [
        tuple_name(),
        TermName::atom("some_atom"),
        TermName::binary(b"bin"),
        TermName::string(""),
        TermName::string("a/*"),
        TermName::string("a**"),
    ];
    for name in &names {
        let e = s.join(name, a1.clone()).unwrap();
        assert_eq!(
            notifies(&e),
            vec![(name.clone(), a1.clone(), Reason::JoinLocal)]
        );
        assert_eq!(
            casts(&e),
            vec![(
                "b".to_string(),
                Request::Join {
                    name: name.clone(),
                    pid: a1.clone()
                }
            )]
        );
    }
    assert_eq!(monitors(&s.join(&names[0], a1.clone()).unwrap()), vec![]);
    let mut sorted = names.to_vec();
    sorted.sort();
    assert_eq!(s.which_groups(), sorted);
    assert_eq!(s.which_groups_of(&a1), sorted);
    assert_eq!(s.join_count(&names[0], &a1), 2);
    // The same term spelled otherwise on the wire is the same name.
    let spelled = tn(crate::term::list(
        "a/*".chars().map(|c| crate::term::int(c as i32)).collect(),
    ));
    assert_eq!(s.join_count(&spelled, &a1), 1);
    s.join(&spelled, a1.clone()).unwrap();
    assert_eq!(s.join_count(&names[4], &a1), 2);
    // Errors carry the term name.
    assert_eq!(
        s.join_counts(&[(names[1].clone(), 0)], a1.clone()),
        Err(WriteError::InvalidCount {
            name: names[1].clone(),
            count: 0
        })
    );
    assert_eq!(
        s.leave(&TermName::string("some_atom"), &a1),
        Err(WriteError::NotMember),
        "an atom and a string of the same text differ"
    );
    let e = s
        .leave_counts(&[(names[0].clone(), 1), (names[0].clone(), 1)], &a1)
        .unwrap();
    assert_eq!(notifies(&e).len(), 2);
    assert_eq!(
        casts(&e),
        vec![(
            "b".to_string(),
            Request::LeaveCounts {
                counts: vec![(names[0].clone(), 2)],
                pid: a1.clone()
            }
        )]
    );
    assert!(s.group(&names[0]).is_none(), "empty group erased");
    check_invariants(&s);
    let e = s.leave_all(&a1).unwrap();
    assert_eq!(demonitors(&e), vec![a1.clone()]);
    assert_eq!(s.group_count(), 0);
    check_invariants(&s);
}

#[test]
fn map_storage_reads_are_exact() {
    let mut s = Scope::new_map("n");
    let (d, e) = (t("n", 1), t("n", 2));
    let first = &mut |_: usize| 0;
    let pat = TermName::string("a/*");
    let empty = TermName::string("");
    s.join(&pat, d.clone()).unwrap();
    s.join(&empty, e.clone()).unwrap();
    s.join(&tuple_name(), e.clone()).unwrap();
    // "a/*" is a plain name: found by its own spelling only.
    assert_eq!(
        s.get_members(&pat, None),
        Ok((&pat, vec![d.clone()].into()))
    );
    let ay = TermName::string("a/y");
    assert_eq!(
        s.get_members(&ay, None),
        Err(ReadError::NoSuchGroup(ay.clone()))
    );
    assert_eq!(
        s.get_closest_pid(&ay, None, first),
        Err(ReadError::NoSuchGroup(ay.clone()))
    );
    assert_eq!(
        s.get_members(&empty, None),
        Ok((&empty, vec![e.clone()].into()))
    );
    assert_eq!(
        s.get_closest_pid(&tuple_name(), None, first),
        Ok((&tuple_name(), e.clone()))
    );
    assert_eq!(
        s.get_remote_pid(&tuple_name(), None, first),
        Err(ReadError::NoProcess(tuple_name()))
    );
    assert_eq!(
        s.get_oldest_pid(&tuple_name(), Some(&e)),
        Err(ReadError::NoProcess(tuple_name()))
    );
    let atom = TermName::atom("a/*");
    assert_eq!(
        s.get_members(&atom, None),
        Err(ReadError::NoSuchGroup(atom.clone()))
    );
}

#[test]
fn map_storage_remote_requests_and_exchange() {
    let mut s = Scope::new_map("b");
    s.node_up("a", true);
    let (a1, a2) = (t("a", 1), t("a", 2));
    let empty = TermName::string("");
    let at = TermName::atom("some_atom");
    // An empty name is a name like any other here (the trie ignores it).
    let e = s.remote_request(
        "a",
        Request::Join {
            name: empty.clone(),
            pid: a1.clone(),
        },
    );
    assert_eq!(
        notifies(&e),
        vec![(empty.clone(), a1.clone(), Reason::JoinRemote)]
    );
    assert_eq!(monitors(&e), vec![a1.clone()]);
    s.remote_request(
        "a",
        Request::JoinCounts {
            counts: vec![(at.clone(), 2), (tuple_name(), 1)],
            pid: a1.clone(),
        },
    );
    assert_eq!(history(&s, &at), vec![a1.clone(), a1.clone()]);
    let e = s.exchange(
        "a",
        vec![
            (at.clone(), vec![a2.clone(), a1.clone()]),
            (TermName::string("new"), vec![a2.clone()]),
        ],
    );
    assert_eq!(
        notifies(&e),
        vec![
            (at.clone(), a1.clone(), Reason::LeaveRemote),
            (at.clone(), a2.clone(), Reason::JoinRemote),
            (TermName::string("new"), a2.clone(), Reason::JoinRemote),
        ]
    );
    assert_eq!(s.join_count(&at, &a1), 1);
    check_invariants(&s);
    // Our exchange lists every term name.
    let Some(Request::Exchange { groups, .. }) = s.exchange_request() else {
        panic!("no exchange");
    };
    let mut names: Vec<TermName> = groups.into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, s.which_groups());
    assert_eq!(names.len(), 4);
    let e = s.node_down("a");
    assert_eq!(notifies(&e).len(), 5);
    assert_eq!(s.group_count(), 0);
    check_invariants(&s);
}

#[test]
fn reads_remote_view() {
    let mut s = Scope::new("b");
    s.node_up("a", true);
    let (pa1, pb1) = (t("a", 1), t("b", 1));
    s.remote_request(
        "a",
        Request::Join {
            name: "p/*".into(),
            pid: pa1.clone(),
        },
    );
    let first = &mut |_: usize| 0;
    assert_eq!(
        s.get_members("p/x", None),
        Ok(("p/*", vec![pa1.clone()].into()))
    );
    assert_eq!(
        s.get_local_members("p/x", None),
        Err(ReadError::NoSuchGroup("p/x".into()))
    );
    assert_eq!(
        s.get_local_pid("p/x", None, first),
        Err(ReadError::NoProcess("p/x".into()))
    );
    assert_eq!(
        s.get_local_oldest_pid("p/x", None),
        Err(ReadError::NoProcess("p/x".into()))
    );
    assert_eq!(
        s.get_furthest_pid("p/x", None, first),
        Ok(("p/*", pa1.clone()))
    );
    assert_eq!(
        s.get_closest_pid("p/x", None, first),
        Ok(("p/*", pa1.clone()))
    );
    s.join("p/*", pb1.clone()).unwrap();
    assert_eq!(
        s.get_closest_pid("p/x", None, first),
        Ok(("p/*", pb1.clone()))
    );
    assert_eq!(
        s.get_furthest_pid("p/x", None, first),
        Ok(("p/*", pa1.clone()))
    );
    assert_eq!(
        s.get_furthest_pid("p/x", Some(&pa1), first),
        Ok(("p/*", pb1.clone()))
    );
    assert_eq!(
        s.get_closest_pid("p/x", Some(&pb1), first),
        Ok(("p/*", pa1.clone()))
    );
    assert_eq!(
        s.get_remote_oldest_pid("p/x", None),
        Ok(("p/*", pa1.clone()))
    );
    assert_eq!(
        s.get_local_newest_pid("p/x", None),
        Ok(("p/*", pb1.clone()))
    );
    assert_eq!(
        s.get_remote_newest_pid("p/x", Some(&pa1)),
        Err(ReadError::NoProcess("p/x".into()))
    );
}
