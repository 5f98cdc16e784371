%% Helpers loaded on the real erl nodes that the Rust integration tests
%% start. The tests reach them through rex (rpc), which a hidden node can
%% use without SPAWN or monitor flags.
-module(cpg_node_test_util).
-export([eval/1, eval/2, spawn_recorder/1, spawn_recorder_after/1, recorded/1,
         spawn_linked_trapper/1,
         spawn_monitor_of/1, spawn_idle/0, big_binary/1, recorded_pid/1, wait_for/1,
         wait_until/3]).

%% Evaluates an Erlang expression sequence given as a string, e.g.
%% "net_adm:ping('r@host').", and returns its value ({error, ...} on a
%% crash, so the rpc never hangs).
eval(Str) -> eval(Str, []).
eval(Str, Bindings) ->
    try
        {ok, Toks, _} = erl_scan:string(Str),
        {ok, Exprs} = erl_parse:parse_exprs(Toks),
        {value, V, _} = erl_eval:exprs(Exprs, Bindings),
        V
    catch C:R:St -> {error, {C, R, St}}
    end.

%% A registered process that records every message it receives.
spawn_recorder(Name) ->
    Pid = spawn(fun() -> recorder_loop([]) end),
    register(Name, Pid),
    Pid.
recorder_loop(Acc) ->
    receive
        {'$recorded', From} -> From ! {'$recorded', lists:reverse(Acc)}, recorder_loop(Acc);
        {From, echo, Msg} when is_pid(From) -> From ! Msg, recorder_loop(Acc);
        M -> recorder_loop([M | Acc])
    end.
recorded_pid(Pid) -> recorded(Pid).

%% A process that runs Setup() (subscribes, links, monitors...) and then
%% records every message it receives (read with recorded_pid/1); returns
%% its pid once Setup has run.
spawn_recorder_after(Setup) ->
    Parent = self(),
    Pid = spawn(fun() ->
        Setup(),
        Parent ! {self(), ready},
        recorder_loop([])
    end),
    receive {Pid, ready} -> Pid after 5000 -> timeout end.
recorded(Name) ->
    Name ! {'$recorded', self()},
    receive {'$recorded', L} -> L after 5000 -> timeout end.

%% A process that traps exits, links to Target and records what it sees
%% under the registered Name.
spawn_linked_trapper(Target) ->
    spawn_recorder_after(fun() -> process_flag(trap_exit, true), link(Target) end).

%% A process that monitors Target (a pid or {Name, Node}) and records the
%% 'DOWN' it gets.
spawn_monitor_of(Target) ->
    spawn_recorder_after(fun() -> erlang:monitor(process, Target) end).

%% A process that waits until told to exit with a reason.
spawn_idle() ->
    spawn(fun() -> receive {exit, R} -> exit(R) end end).

big_binary(N) -> binary:copy(<<"x">>, N).

%% Waits (up to 10 s) until Name is registered.
wait_for(Name) -> wait_for(Name, 200).
wait_for(Name, 0) -> error({not_registered, Name});
wait_for(Name, N) ->
    case whereis(Name) of
        undefined -> timer:sleep(50), wait_for(Name, N - 1);
        Pid -> Pid
    end.

%% Polls F() every 50 ms, at most Tries times, until it returns Want;
%% returns what F() last gave.
wait_until(_, F, 0) -> F();
wait_until(Want, F, Tries) ->
    case F() of
        Want -> Want;
        _ -> timer:sleep(50), wait_until(Want, F, Tries - 1)
    end.
