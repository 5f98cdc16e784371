%% Messages per second over the distribution, BEAM side of
%% scripts/bench_msgs.sh (driven by examples/msg_bench.rs).
%%
%% sink/0 runs a registered process `msg_sink` that counts the messages
%% `{m, Payload}` it was told to expect and then says `{done, Sink}`.
%% blast/3 times, on this node, sending N messages to a sink (a pid on
%% another node, BEAM or ours) until the sink says it got them all.
%% echo/0 runs a process answering gen_server calls with the request and
%% dropping anything else; calls/3 times sequential calls to an echo
%% while a stream of 1 KiB messages goes to it from another process;
%% callers/3 counts the calls a second of many callers at once.
-module(msg_bench).
-export([sink/0, blast/3, echo/0, calls/3, callers/3]).

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

echo() ->
    spawn(fun() -> echo_loop() end).

echo_loop() ->
    receive
        {'$gen_call', From, Req} -> gen:reply(From, Req);
        _ -> ok
    end,
    echo_loop().

%% N sequential gen_server calls to Echo (a pid on another node, BEAM or
%% ours), each timed, while another process of this node sends Echo
%% Burst messages {m, <<_:1024/binary>>} every millisecond (none when
%% Burst is 0): the median and the 99th percentile of the round trips,
%% in microseconds.
calls(Echo, N, Burst) ->
    S = spawn(fun() -> stream(Echo, Burst) end),
    warm = gen_server:call(Echo, warm),
    L = lists:sort([begin
                        T0 = erlang:monotonic_time(microsecond),
                        I = gen_server:call(Echo, I),
                        erlang:monotonic_time(microsecond) - T0
                    end || I <- lists:seq(1, N)]),
    exit(S, kill),
    {lists:nth(max(1, N div 2), L), lists:nth(max(1, (N * 99) div 100), L)}.

stream(_, 0) ->
    receive after infinity -> ok end;
stream(Echo, Burst) ->
    M = {m, binary:copy(<<7>>, 1024)},
    stream_loop(Echo, Burst, M).

stream_loop(Echo, Burst, M) ->
    [Echo ! M || _ <- lists:seq(1, Burst)],
    receive after 1 -> ok end,
    stream_loop(Echo, Burst, M).

%% Callers processes of this node call Echo in a loop for Ms milliseconds,
%% each call after the last one's reply: the calls a second of them all.
callers(Echo, Callers, Ms) ->
    Self = self(),
    End = erlang:monotonic_time(millisecond) + Ms,
    Ps = [spawn(fun() -> Self ! {calls, call_loop(Echo, End, 0)} end)
          || _ <- lists:seq(1, Callers)],
    N = lists:sum([receive {calls, K} -> K end || _ <- Ps]),
    N * 1000 div Ms.

call_loop(Echo, End, N) ->
    case erlang:monotonic_time(millisecond) >= End of
        true -> N;
        false ->
            x = gen_server:call(Echo, x),
            call_loop(Echo, End, N + 1)
    end.
