%% Erlang-side EUnit tests of the Rust cpg scope, run from a plain erl node
%% (no genuine cpg) against `cpg-node run --join svc --join svc` started by
%% scripts/erl_tests.sh. This node plays a cpg scope: it registers under
%% cpg_default_scope and speaks the protocol to the Rust scope.
-module(cpg_scope_tests).
-include_lib("eunit/include/eunit.hrl").

-define(SCOPE, cpg_default_scope).

rust() -> list_to_atom(os:getenv("RUST_NODE")).

all_test_() ->
    {inorder, [
        {"{new, Node} is answered with the Rust scope's state", as_scope(fun new_gets_exchange/0)},
        {"a member found through cpg answers gen_server:call", as_scope(fun call_member/0)},
        {"our join cast is applied by the Rust scope", as_scope(fun join_applied/0)},
        {"junk to the scope is dropped; it keeps serving", as_scope(fun junk_dropped/0)}
     ]}.

%% Runs Test in a process registered as the scope, the way a cpg scope
%% process is; unregisters and flushes afterwards.
as_scope(Test) ->
    fun() ->
        pong = net_adm:ping(rust()),
        register(?SCOPE, self()),
        try Test() after unregister(?SCOPE), flush() end
    end.

exchange() ->
    flush(),
    {?SCOPE, rust()} ! {new, node()},
    receive
        {'$gen_cast', {exchange, Node, Groups}} -> {Node, Groups}
    after 5000 -> timeout
    end.

flush() -> receive _ -> flush() after 0 -> ok end.

new_gets_exchange() ->
    {Node, Groups} = exchange(),
    ?assertEqual(rust(), Node),
    {"svc", [P, P]} = lists:keyfind("svc", 1, Groups),
    ?assertEqual(rust(), node(P)).

call_member() ->
    {_, Groups} = exchange(),
    {"svc", [P | _]} = lists:keyfind("svc", 1, Groups),
    ?assertEqual(hi, gen_server:call(P, hi)).

join_applied() ->
    Me = self(),
    gen_server:cast({?SCOPE, rust()}, {join, "from_erl/ü", Me}),
    timer:sleep(200),
    {_, Groups} = exchange(),
    ?assertEqual({"from_erl/ü", [Me]}, lists:keyfind("from_erl/ü", 1, Groups)),
    gen_server:cast({?SCOPE, rust()}, {leave, "from_erl/ü", Me}),
    timer:sleep(200),
    {_, Groups2} = exchange(),
    ?assertEqual(false, lists:keyfind("from_erl/ü", 1, Groups2)).

junk_dropped() ->
    {?SCOPE, rust()} ! junk,
    gen_server:cast({?SCOPE, rust()}, {join, not_a_string, self()}),
    gen_server:cast({?SCOPE, rust()}, {join, "", self()}),
    {_, Groups} = exchange(),
    ?assertMatch({"svc", [_, _]}, lists:keyfind("svc", 1, Groups)).
