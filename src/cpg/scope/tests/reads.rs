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
    let mut idx = 3;
    assert_eq!(
        s.get_random_pid("g", None, &mut |n| {
            assert_eq!(n, 5);
            idx
        }),
        Ok(("g", b.clone()))
    );
    idx = 1;
    assert_eq!(
        s.get_random_pid("g", Some(&c), &mut |n| {
            assert_eq!(n, 3);
            idx
        }),
        Ok(("g", b.clone()))
    );
    assert_eq!(
        s.get_local_pid("g", Some(&a), &mut |n| {
            assert_eq!(n, 3);
            2
        }),
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
