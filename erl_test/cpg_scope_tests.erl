%% Erlang-side EUnit tests of the Rust cpg scope, run from a plain erl node
%% (no genuine cpg) against `cpg-node run --join svc --join svc` started by
%% scripts/erl_tests.sh. This node plays a cpg scope: first the test process
%% registers under cpg_default_scope and speaks the protocol to the Rust
%% scope by hand, then cpg_model_scope (a model of a genuine scope) does.
-module(cpg_scope_tests).
-include_lib("eunit/include/eunit.hrl").

-define(SCOPE, cpg_default_scope).

rust() -> list_to_atom(os:getenv("RUST_NODE")).

all_test_() ->
    {inorder, [
        {"{new, Node} is answered with the Rust scope's state", as_scope(fun new_gets_exchange/0)},
        {"a member found through cpg answers gen_server:call", as_scope(fun call_member/0)},
        {"our join cast is applied by the Rust scope", as_scope(fun join_applied/0)},
        {"junk to the scope is dropped; it keeps serving", as_scope(fun junk_dropped/0)},
        {"cpg_data hands out the state as genuine cpg holds it", as_scope(fun state_handed_out/0)},
        {"a model scope gets the Rust members", with_model(fun model_gets_members/0)},
        {"a model join is kept by the Rust scope", with_model(fun model_join_kept/0)},
        {"netsplit and heal with a model scope", with_model(fun model_netsplit/0)}
     ]}.

%% Runs Test with cpg_model_scope (a model of a genuine scope at node_type
%% all, erl_test/cpg_model_scope.erl) registered as the scope on this node.
with_model(Test) ->
    fun() ->
        pong = net_adm:ping(rust()),
        {ok, _} = cpg_model_scope:start(?SCOPE),
        try Test() after cpg_model_scope:stop(?SCOPE) end
    end.

%% Polls (up to 5 s) until F() returns Want; returns what F() last gave.
wait_until(Want, F) -> cpg_node_test_util:wait_until(Want, F, 100).

svc() -> cpg_model_scope:get_members(?SCOPE, "svc").

%% Waits until the model holds N copies in "svc"; its members.
wait_svc(N) ->
    Count = fun() -> case svc() of {ok, _, Ps} -> length(Ps); _ -> 0 end end,
    ?assertEqual(N, wait_until(N, Count)),
    case svc() of {ok, _, Ps} -> Ps; _ -> [] end.

%% On start the model sends {new, node()}; the Rust scope answers with its
%% exchange: its member joined "svc" twice.
model_gets_members() ->
    [P, P] = wait_svc(2),
    ?assertEqual(rust(), node(P)).

%% A local join is cast to the Rust scope; a restarted model scope gets it
%% back from the Rust scope's exchange (the merge repairs local pids).
model_join_kept() ->
    M = cpg_node_test_util:spawn_idle(),
    ok = cpg_model_scope:join(?SCOPE, "from_model", M),
    ok = cpg_model_scope:join(?SCOPE, "from_model", M),
    timer:sleep(200),
    cpg_model_scope:stop(?SCOPE),
    {ok, _} = cpg_model_scope:start(?SCOPE),
    Got = wait_until({ok, "from_model", [M, M]},
                     fun() -> cpg_model_scope:get_members(?SCOPE, "from_model") end),
    ?assertEqual({ok, "from_model", [M, M]}, Got),
    %% Its death reaches the Rust scope through the Rust node's monitor.
    M ! {exit, done},
    timer:sleep(300),
    cpg_model_scope:stop(?SCOPE),
    {ok, _} = cpg_model_scope:start(?SCOPE),
    wait_svc(2),
    ?assertEqual({error, {no_such_group, "from_model"}},
                 cpg_model_scope:get_members(?SCOPE, "from_model")).

%% A nodedown drops the Rust members; the heal's exchanges bring them back.
model_netsplit() ->
    wait_svc(2),
    true = erlang:disconnect_node(rust()),
    wait_svc(0),
    true = net_kernel:connect_node(rust()),
    wait_svc(2).

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

%% The `cpg_data` call (what cpg_data:get_groups/1 makes) answers the
%% scope's state as genuine cpg holds it, {trie, Trie}: a trie of
%% okeuday/trie's layout whose values are #cpg_data{} records (the Rust
%% node's view: its pids local). Read here without genuine trie, by the
%% layout: every group the scope lists, with its members, and no other.
%% `{cpg_data, From}` sends the same as {cloudi_cpg_data, State}, and
%% `{reset, From}` answers {cloudi_cpg_reset, Scope}.
state_handed_out() ->
    Me = self(),
    gen_server:cast({?SCOPE, rust()}, {join, "svd", Me}),
    gen_server:cast({?SCOPE, rust()}, {join, "s/*", Me}),
    timer:sleep(200),
    {trie, Trie} = State = gen_server:call({?SCOPE, rust()}, cpg_data, 5000),
    Groups = trie_to_list(Trie),
    ?assertEqual(lists:sort(gen_server:call({?SCOPE, rust()}, which_groups)),
                 [K || {K, _} <- Groups]),
    {"svc", Svc} = lists:keyfind("svc", 1, Groups),
    {cpg_data, 2, [P, P], 0, [], [P, P]} = Svc,
    ?assertEqual(rust(), node(P)),
    ?assertEqual({cpg_data, 0, [], 1, [Me], [Me]}, element(2, lists:keyfind("svd", 1, Groups))),
    %% (A pattern is found by a name it matches, as its spelling holds a
    %% wildcard, which a read refuses.)
    Name = fun(K) -> [case C of $* -> $x; _ -> C end || C <- K] end,
    [?assertEqual({ok, K, H}, gen_server:call({?SCOPE, rust()}, {get_members, Name(K)}))
     || {K, {cpg_data, _, _, _, _, H}} <- Groups],
    %% "svc" and "svd" share their first two characters: one slot for "s",
    %% below it "/*" as a leaf and a node for "v" holding "c" and "d".
    {115, 115, {{{47, 118, Slots}, error}}} = Trie,
    {"*", _} = element(1, Slots),
    {{99, 100, {{[], Svc}, {[], _}}}, error} = element(118 - 47 + 1, Slots),
    flush(),
    {?SCOPE, rust()} ! {cpg_data, Me},
    receive {cloudi_cpg_data, Got} -> ?assertEqual(State, Got)
    after 5000 -> error(no_cloudi_cpg_data) end,
    {?SCOPE, rust()} ! {reset, Me},
    receive {cloudi_cpg_reset, Scope} -> ?assertEqual(?SCOPE, Scope)
    after 5000 -> error(no_cloudi_cpg_reset) end,
    gen_server:cast({?SCOPE, rust()}, {leave, Me}),
    timer:sleep(200).

%% The keys and values of an okeuday/trie term, in key order, read by its
%% layout: [] or {I0, I1, Slots}, one {Node, Value} slot a character, Node a
%% node below or the rest of a leaf's key, Value the key's or error.
trie_to_list([]) -> [];
trie_to_list({I0, I1, Slots}) ->
    lists:append([slot_to_list([C], element(C - I0 + 1, Slots)) || C <- lists:seq(I0, I1)]).
slot_to_list(_, {[], error}) -> [];
slot_to_list(Key, {{_, _, _} = Node, Value}) ->
    [{Key, Value} || Value =/= error] ++ [{Key ++ K, V} || {K, V} <- trie_to_list(Node)];
slot_to_list(Key, {Tail, Value}) -> [{Key ++ Tail, Value}].
