%% Messages per second over the distribution, BEAM side of
%% scripts/bench_msgs.sh (driven by examples/msg_bench.rs).
%%
%% sink/0 runs a registered process `msg_sink` that counts the messages
%% `{m, Payload}` it was told to expect and then says `{done, Sink}`.
%% blast/3 times, on this node, sending N messages to a sink (a pid on
%% another node, BEAM or ours) until the sink says it got them all.
-module(msg_bench).
-export([sink/0, blast/3]).

sink() ->
    Pid = spawn(fun() -> sink_loop() end),
    register(msg_sink, Pid),
    Pid.

sink_loop() ->
    receive
        {expect, N, From} ->
            count(N),
            From ! {done, self()},
            sink_loop()
    end.

count(0) -> ok;
count(N) ->
    receive
        {m, _} -> count(N - 1)
    end.

%% Sends N copies of {m, Payload} to Sink; returns the microseconds from
%% the first send to the sink's {done, _}.
blast(Sink, N, Payload) ->
    Sink ! {expect, N, self()},
    T0 = erlang:monotonic_time(microsecond),
    send_n(Sink, N, {m, Payload}),
    receive
        {done, _} -> erlang:monotonic_time(microsecond) - T0
    after 120000 -> timeout
    end.

send_n(_, 0, _) -> ok;
send_n(Sink, N, M) ->
    Sink ! M,
    send_n(Sink, N - 1, M).
