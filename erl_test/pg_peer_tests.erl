%% Erlang-side EUnit tests of the Rust OTP pg scope, run from a plain erl
%% node against `cpg-node run --pg-join svc --pg-join svc` started by
%% scripts/erl_tests.sh. This node runs OTP's own pg scope `pg`.
-module(pg_peer_tests).
-include_lib("eunit/include/eunit.hrl").

rust() -> list_to_atom(os:getenv("RUST_NODE")).

all_test_() ->
    {inorder, [
        {"pg:get_members lists the Rust member twice", fun members_listed/0},
        {"the Rust member answers gen_server:call", fun call_member/0},
        {"discover is answered with sync then discover, as pg does", fun discover_answered/0},
        {"junk to the Rust scope is dropped; it keeps serving", fun junk_dropped/0}
     ]}.

ensure_pg() ->
    case whereis(pg) of
        undefined -> {ok, _} = pg:start(pg), ok;
        _ -> ok
    end.

wait_until(Want, F) -> cpg_node_test_util:wait_until(Want, F, 200).

%% The Rust scope discovers ours (it retries while no scope answered).
rust_svc() ->
    ensure_pg(),
    pong = net_adm:ping(rust()),
    Rust = fun() -> [P || P <- pg:get_members(pg, svc), node(P) =:= rust()] end,
    ?assertEqual(2, wait_until(2, fun() -> length(Rust()) end)),
    Rust().

members_listed() ->
    [P, P] = rust_svc(),
    Scope = whereis(pg),
    ?assertEqual(Scope, whereis(pg)).

call_member() ->
    [P | _] = rust_svc(),
    ?assertEqual(hello, gen_server:call(P, hello)).

%% A new peer's discover: the sync (our members) first, then a discover.
discover_answered() ->
    [P, P] = rust_svc(),
    {pg, rust()} ! {discover, self()},
    Sync = receive {'$gen_cast', {sync, S, Groups}} -> {S, Groups} after 5000 -> timeout end,
    ?assertMatch({_, [{svc, [P, P]}]}, Sync),
    {RustScope, _} = Sync,
    ?assertEqual(rust(), node(RustScope)),
    receive {discover, D} -> ?assertEqual(RustScope, D) after 5000 -> ?assert(false) end.

junk_dropped() ->
    [P, P] = rust_svc(),
    {pg, rust()} ! {junk},
    {pg, rust()} ! {join, self(), g, not_a_pid},
    {pg, rust()} ! {discover, self()},
    receive {'$gen_cast', {sync, _, Groups}} -> ?assertEqual([{svc, [P, P]}], Groups)
    after 5000 -> ?assert(false)
    end.
