use super::*;

// ------------------------------------------------------------------
// Reads

#[test]
fn reads_single_node() {
    let mut s = Scope::new("n");
    let (a, b, c) = (t("n", 1), t("n", 2), t("n", 3));
    for p in [&a, &b, &a, &c, &c] {
        s.join("g", p.clone()).unwrap();
    }
    // history [C,C,A,B,A]
    let first = &mut |_: usize| 0;
    assert_eq!(
        s.get_members("g", None),
        Ok((
            "g",
            vec![c.clone(), c.clone(), a.clone(), b.clone(), a.clone()].into()
        ))
    );
    assert_eq!(
        s.get_members("g", Some(&c)),
        Ok(("g", vec![a.clone(), b.clone(), a.clone()].into()))
    );
    assert_eq!(s.get_oldest_pid("g", None), Ok(("g", a.clone())));
    assert_eq!(s.get_newest_pid("g", None), Ok(("g", c.clone())));
    assert_eq!(s.get_oldest_pid("g", Some(&a)), Ok(("g", b.clone())));
    assert_eq!(s.get_newest_pid("g", Some(&c)), Ok(("g", a.clone())));
    assert_eq!(s.get_local_oldest_pid("g", Some(&a)), Ok(("g", b.clone())));
    assert_eq!(s.get_local_newest_pid("g", None), Ok(("g", c.clone())));
    assert_eq!(s.get_furthest_pid("g", None, first), Ok(("g", c.clone())));
    assert_eq!(
        s.get_remote_oldest_pid("g", None),
        Err(ReadError::NoProcess("g".into()))
    );
    assert_eq!(
        s.get_remote_newest_pid("g", None),
        Err(ReadError::NoProcess("g".into()))
    );
    assert_eq!(
        s.get_remote_pid("g", None, first),
        Err(ReadError::NoProcess("g".into()))
    );
    assert_eq!(
        s.get_remote_members("g", None),
        Err(ReadError::NoSuchGroup("g".into()))
    );
    assert_eq!(
        s.get_local_members("g", Some(&a)),
        Ok(("g", vec![c.clone(), c.clone(), b.clone()].into()))
    );
    // random selection: index into the copies, newest first
    let idx = 3;
    assert_eq!(
        s.get_random_pid("g", None, &mut |n| {
            assert_eq!(n, 5);
            idx
        }),
        Ok(("g", b.clone()))
    );
    // With a pid excluded, the draw is still over every copy, as
    // cpg_data's pick_i draws (`genuine_pick` below): a copy that is not
    // excluded is taken, an excluded one gives the next that is not.
    for (idx, want) in [(0, &a), (1, &a), (2, &a), (3, &b), (4, &a)] {
        assert_eq!(
            s.get_random_pid("g", Some(&c), &mut |n| {
                assert_eq!(n, 5);
                idx
            }),
            Ok(("g", want.clone())),
            "{idx}"
        );
    }
    // [C,C,A,B,A] without A, drawn at the last copy: none after it, so
    // the one pick_i takes from those before it (`(5 rem 3) + 1`-th of
    // [B,C,C]: C).
    assert_eq!(
        s.get_local_pid("g", Some(&a), &mut |n| {
            assert_eq!(n, 5);
            4
        }),
        Ok(("g", c.clone()))
    );
    assert_eq!(
        s.get_local_pid("g", Some(&a), &mut |_| 2),
        Ok(("g", b.clone()))
    );
    assert_eq!(
        s.get_closest_pid("g", None, &mut |n| n + 1),
        Ok(("g", c.clone())),
        "index taken modulo n"
    );
    assert_eq!(s.join_count("g", &c), 2);
    assert_eq!(s.join_count("g", &t("n", 9)), 0);
    // only member excluded
    let mut s = Scope::new("n");
    s.join("solo", a.clone()).unwrap();
    assert_eq!(
        s.get_closest_pid("solo", Some(&a), first),
        Err(ReadError::NoProcess("solo".into()))
    );
    assert_eq!(
        s.get_furthest_pid("solo", Some(&a), first),
        Err(ReadError::NoProcess("solo".into()))
    );
    assert_eq!(
        s.get_random_pid("solo", Some(&a), first),
        Err(ReadError::NoProcess("solo".into()))
    );
    assert_eq!(
        s.get_oldest_pid("solo", Some(&a)),
        Err(ReadError::NoProcess("solo".into()))
    );
    assert_eq!(
        s.get_members("solo", Some(&a)),
        Err(ReadError::NoSuchGroup("solo".into()))
    );
    assert_eq!(
        s.get_members("nosuch", None),
        Err(ReadError::NoSuchGroup("nosuch".into()))
    );
    assert_eq!(
        s.get_closest_pid("nosuch", None, first),
        Err(ReadError::NoSuchGroup("nosuch".into()))
    );
    assert_eq!(
        s.get_oldest_pid("nosuch", None),
        Err(ReadError::NoSuchGroup("nosuch".into()))
    );
}

#[test]
fn reads_patterns_and_names() {
    let mut s = Scope::new("n");
    let (d, e) = (t("n", 1), t("n", 2));
    let first = &mut |_: usize| 0;
    assert_eq!(
        s.get_members("", None),
        Err(ReadError::NoSuchGroup(String::new()))
    );
    s.join("a/*", d.clone()).unwrap();
    s.join("a/x", e.clone()).unwrap();
    s.join("a/*/c", e.clone()).unwrap();
    let found = [
        ("a/x", "a/x", &e),
        ("a/y", "a/*", &d),
        ("a/yy", "a/*", &d),
        ("a/b/c", "a/*/c", &e),
    ];
    for (name, key, pid) in found {
        assert_eq!(
            s.get_members(name, None),
            Ok((key, Members::one(pid.clone()))),
            "{name}"
        );
    }
    assert_eq!(
        s.get_members("a/", None),
        Err(ReadError::NoSuchGroup("a/".into()))
    );
    assert_eq!(
        s.get_members("a/*", None),
        Err(ReadError::NoSuchGroup("a/*".into()))
    );
    assert_eq!(
        s.get_members("a/?", None),
        Err(ReadError::NoSuchGroup("a/?".into()))
    );
    assert_eq!(
        s.get_members("", None),
        Err(ReadError::NoSuchGroup(String::new()))
    );
    assert_eq!(
        s.get_closest_pid("a/y", None, first),
        Ok(("a/*", d.clone()))
    );
    assert_eq!(
        s.get_remote_pid("a/y", None, first),
        Err(ReadError::NoProcess("a/y".into()))
    );
    assert_eq!(
        s.get_remote_members("a/y", None),
        Err(ReadError::NoSuchGroup("a/y".into()))
    );
    assert_eq!(
        s.get_local_members("a/y", Some(&d)),
        Err(ReadError::NoSuchGroup("a/y".into()))
    );
    assert_eq!(
        s.get_closest_pid("a/y", Some(&d), first),
        Err(ReadError::NoProcess("a/y".into()))
    );
    assert_eq!(
        s.get_oldest_pid("a/y", Some(&d)),
        Err(ReadError::NoProcess("a/y".into()))
    );
    // exact-name reads
    assert_eq!(s.which_groups(), vec!["a/*", "a/*/c", "a/x"]);
    assert_eq!(s.join_count("a/y", &d), 0);
    assert_eq!(s.join_count("a/*", &d), 1);
    assert_eq!(s.which_groups_of(&e), vec!["a/*/c", "a/x"]);
    assert_eq!(s.which_groups_of(&t("n", 9)), Vec::<String>::new());
    assert_eq!(s.which_groups_counts(&t("n", 9)), vec![]);
}

/// The state as genuine cpg hands it out: `{trie, Trie}`, each group a
/// `#cpg_data{}` record of this node's view (its own pids local), lists
/// newest first; a map storage hands out none.
#[test]
fn the_state_handed_out_is_genuine_cpgs_term() {
    use crate::term::{atom, int, list, nil, string_to_charlist as s_, tuple, Term};
    let mut s = Scope::new("a");
    s.node_up("b", true);
    let (a1, b1) = (t("a", 1), t("b", 1));
    s.join("gh", a1.clone()).unwrap();
    s.remote_request(
        "b",
        Request::Join {
            name: "gh".into(),
            pid: b1.clone(),
        },
    );
    s.join("gh", a1.clone()).unwrap();
    s.join("gi", a1.clone()).unwrap();
    let pid = |p: &T| atom(&format!("{}{}", p.node, p.id));
    let write_pid =
        |out: &mut Vec<u8>, p: &T| crate::term::write::atom(out, &format!("{}{}", p.node, p.id));
    let mut out = Vec::new();
    s.genuine_state(Default::default(), &mut out, write_pid)
        .unwrap()
        .unwrap();
    let got = crate::term::Encoded::written(out)
        .decode(Default::default())
        .unwrap();
    let record = |lc: i32, l: Vec<Term>, rc: i32, r: Vec<Term>, h: Vec<Term>| {
        tuple(vec![
            atom("cpg_data"),
            int(lc),
            list(l),
            int(rc),
            list(r),
            list(h),
        ])
    };
    let (pa, pb) = (pid(&a1), pid(&b1));
    let gh = record(
        2,
        vec![pa.clone(), pa.clone()],
        1,
        vec![pb.clone()],
        vec![pa.clone(), pb, pa.clone()],
    );
    let gi = record(1, vec![pa.clone()], 0, vec![], vec![pa]);
    // "gh" and "gi" share "g": one slot for it, a node below for h and i.
    let want = tuple(vec![
        atom("trie"),
        tuple(vec![
            int(103),
            int(103),
            tuple(vec![tuple(vec![
                tuple(vec![
                    int(104),
                    int(105),
                    tuple(vec![tuple(vec![nil(), gh]), tuple(vec![s_(""), gi])]),
                ]),
                atom("error"),
            ])]),
        ]),
    ]);
    assert_eq!(got, want);
    let mut m = Scope::<T, TermName>::new_map("a");
    m.join(&TermName::new(atom("g")), a1).unwrap();
    let mut out = Vec::new();
    assert!(m
        .genuine_state(Default::default(), &mut out, write_pid)
        .is_none());
    assert!(out.is_empty());
}

/// `cpg_data:pick_i/8` as genuine cpg 2.0.7 runs it: `random` (1 to the
/// length of `l`, every copy counted) picks a copy; an excluded one gives
/// the next copy that is not excluded, else one of those before it.
fn genuine_pick(l: &[T], exclude: &T, random: usize) -> Option<T> {
    let mut i = 1;
    // Those before the drawn copy that are not excluded, last first.
    let mut filtered: Vec<&T> = Vec::new();
    for p in l {
        if i == random {
            if p == exclude {
                continue;
            }
            return Some(p.clone());
        }
        if p != exclude {
            filtered.insert(0, p);
        }
        i += 1;
    }
    match filtered.len() {
        0 => None,
        len => Some(filtered[random % len].clone()),
    }
}

proptest! {
    /// Every pick with a pid excluded (`get_random_pid`, and through the
    /// same code the local, remote, closest and furthest picks) returns
    /// the copy genuine's `pick_i` returns for the same draw, in groups of
    /// every size and layout (small lists and the large groups' tree).
    #[test]
    fn a_pick_with_a_pid_excluded_is_genuines(
        joins in proptest::collection::vec(0u32..5, 1..60),
        exclude in 0u32..6,
        draw in 0usize..1000,
    ) {
        let mut s = Scope::new("n");
        for &id in &joins {
            s.join("g", t("n", id)).unwrap();
        }
        let x = t("n", exclude);
        let history: Vec<T> = s.get_members("g", None).unwrap().1.iter().cloned().collect();
        let n = history.len();
        let want = genuine_pick(&history, &x, draw % n + 1);
        let got = s.get_random_pid("g", Some(&x), &mut |m| {
            assert_eq!(m, n, "drawn over every copy");
            draw
        });
        match want {
            Some(p) => prop_assert_eq!(got, Ok(("g", p))),
            None => prop_assert_eq!(got, Err(ReadError::NoProcess("g".into()))),
        }
    }
}
