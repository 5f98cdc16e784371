%% Erlang-side EUnit tests: a plain erl node checks a running cpg-node
%% (started by scripts/erl_tests.sh with `cpg-node run --register echo`).
%% Environment: RUST_NODE (its node name), RUST_OS_PID (its OS pid, to stop
%% it at the end), COOKIE (the right cookie).
-module(hidden_node_tests).
-include_lib("eunit/include/eunit.hrl").

rust() -> list_to_atom(os:getenv("RUST_NODE")).

all_test_() ->
    {inorder, [
        {"wrong cookie gives pang", fun wrong_cookie/0},
        {"net_adm:ping gives pong", fun ping/0},
        {"hidden: in nodes(hidden), not in nodes()", fun hidden/0},
        {"gen_server:call to the echo process", fun call/0},
        {"message round trip", fun message/0},
        {"monitor of a missing name: noproc", fun monitor_noproc/0},
        {"monitor and link of the echo pid", fun monitor_and_link/0},
        {"'DOWN' when the Rust node stops", {timeout, 30, fun down_on_stop/0}}
    ]}.

wrong_cookie() ->
    R = rust(),
    Right = list_to_atom(os:getenv("COOKIE")),
    erlang:disconnect_node(R),
    timer:sleep(100),
    true = erlang:set_cookie(R, 'not_the_cookie'),
    ?assertEqual(pang, net_adm:ping(R)),
    true = erlang:set_cookie(R, Right).

ping() -> ?assertEqual(pong, net_adm:ping(rust())).

hidden() ->
    R = rust(),
    pong = net_adm:ping(R),
    ?assert(lists:member(R, nodes(hidden))),
    ?assertNot(lists:member(R, nodes())).

call() ->
    ?assertEqual(hi, gen_server:call({echo, rust()}, hi)),
    ?assertEqual({a, [1, 2], <<"bin">>}, gen_server:call({echo, rust()}, {a, [1, 2], <<"bin">>})).

message() ->
    {echo, rust()} ! {self(), hello},
    ?assertEqual(hello, receive hello -> hello after 5000 -> timeout end).

monitor_noproc() ->
    Ref = erlang:monitor(process, {no_such_name, rust()}),
    ?assertEqual(noproc, receive {'DOWN', Ref, process, _, Why} -> Why after 5000 -> timeout end).

monitor_and_link() ->
    %% Find the echo pid through a call, then monitor it by pid; demonitor.
    {echo, rust()} ! {self(), ping},
    receive ping -> ok after 5000 -> error(no_echo) end,
    Ref = erlang:monitor(process, {echo, rust()}),
    ?assert(erlang:demonitor(Ref, [flush])).

down_on_stop() ->
    R = rust(),
    Ref = erlang:monitor(process, {echo, R}),
    timer:sleep(200),
    os:cmd("kill -TERM " ++ os:getenv("RUST_OS_PID")),
    Why = receive {'DOWN', Ref, process, _, W} -> W after 20000 -> timeout end,
    ?assertNotEqual(timeout, Why).
