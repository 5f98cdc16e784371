%% The BEAM side of scripts/bench_cluster.sh (driven by
%% examples/cluster_bench.rs, except codec/1): propagation of joins from
%% one node's cpg scope to another's, exchange ingest, and the term codec.
%%
%% A shape {G, K}: G groups "p0".."p<G-1>" of K members each, drawn from G
%% member processes (group I holds pids (I + J) rem G, J < K), joined group
%% by group. Casts from one node arrive in order, so a watcher knows every
%% join has arrived once the last group holds K members (then it checks
%% the group count too).
%%
%% Timed on the joining node: run_joins/2 tells the watcher (a process on
%% the other node, BEAM or ours) {start, self()}, reads the clock, joins,
%% and stops the clock when the watcher says {done, _}; the watcher polls
%% every millisecond.
-module(cluster_bench).
-export([bb_prop/2, run_joins/2, watch/1, wait_empty/0, fill/1, clear/0,
         groups/0, reader_group/0, settle/2, ingest/2, ingest_memory/2,
         state_call/1, codec/1]).

-define(SCOPE, cpg_default_scope).
-define(T, 120000).

%% Every call to the scope waits as long as it takes (infinity): a scope
%% busy with 1M memberships can take longer than gen_server's 5 s.

now_us() -> erlang:monotonic_time(microsecond).

name(I) -> "p" ++ integer_to_list(I).

%% G member processes linked to a holder (killing the holder kills them).
holder(G) ->
    Self = self(),
    H = spawn(fun() ->
                      Pids = [spawn_link(fun() -> receive stop -> ok end end)
                              || _ <- lists:seq(1, G)],
                      Self ! {pids, self(), list_to_tuple(Pids)},
                      receive stop -> ok end
              end),
    receive {pids, H, Pids} -> {H, Pids} end.

kill_holder(H) ->
    exit(H, kill),
    wait_groups(0).

join_all({G, K}, Pids) -> join_all(0, G, K, Pids).

join_all(G, G, _, _) -> ok;
join_all(I, G, K, Pids) ->
    Name = name(I),
    [ok = cpg:join(?SCOPE, Name, element((I + J) rem G + 1, Pids), infinity)
     || J <- lists:seq(0, K - 1)],
    join_all(I + 1, G, K, Pids).

%% Groups in this node's scope, the ingest's "reader" group left out.
groups() ->
    length([X || X <- cpg:which_groups(?SCOPE, infinity), X =/= "reader"]).

%% Waits until this node's scope has exactly N groups (reader left out).
wait_groups(N) ->
    case groups() of
        N -> ok;
        _ -> receive after 5 -> wait_groups(N) end
    end.

%% BEAM -> BEAM, run on the joining node: a watcher on node B, then the
%% joins here; returns run_joins/2's figures once both scopes are empty
%% again.
bb_prop(B, Shape) ->
    W = rpc:call(B, ?MODULE, watch, [Shape]),
    true = is_pid(W),
    T = run_joins(Shape, W),
    ok = rpc:call(B, ?MODULE, wait_empty, []),
    T.

%% Joins Shape here, timed from the first join until Watcher says done;
%% then the members exit and the scope empties. Returns {Us, JoinsUs}:
%% the microseconds until done, and until the last join returned.
run_joins({G, _} = Shape, Watcher) ->
    {H, Pids} = holder(G),
    Watcher ! {start, self()},
    T0 = now_us(),
    join_all(Shape, Pids),
    TJ = now_us() - T0,
    receive {done, _} -> ok after ?T -> exit(watcher_timeout) end,
    T = now_us() - T0,
    kill_holder(H),
    {T, TJ}.

%% A watcher process for Shape on this node (see run_joins/2).
watch(Shape) ->
    spawn(fun() ->
                  receive {start, From} -> ok end,
                  poll(Shape),
                  From ! {done, self()}
          end).

wait_empty() -> wait_groups(0).

%% Until the last group holds K members and G groups exist.
poll({G, K} = Shape) ->
    Full = case cpg:get_members(?SCOPE, name(G - 1), infinity) of
               {ok, _, L} when length(L) >= K -> groups() >= G;
               _ -> false
           end,
    case Full of
        true -> ok;
        false -> receive after 1 -> poll(Shape) end
    end.

%% Ingest: fill/1 joins Shape on this node (held until clear/0).
fill({G, _} = Shape) ->
    {H, Pids} = holder(G),
    join_all(Shape, Pids),
    register(cluster_bench_fill, H),
    ok.

clear() ->
    case whereis(cluster_bench_fill) of
        undefined -> wait_groups(0);
        H -> kill_holder(H)
    end.

%% A local member of the group "reader" (which the ingest's reader looks
%% up), kept until the node stops.
reader_group() ->
    P = spawn(fun() -> receive stop -> ok end end),
    ok = cpg:join(?SCOPE, "reader", P, infinity),
    ok.

%% Ingest on this node (which holds the reader group): disconnect from S
%% (which holds Shape), wait until its members are gone and the scope is
%% idle, then connect and
%% time until Shape is here; a reader process calls
%% cpg:get_closest_pid("reader") every millisecond meanwhile. Returns
%% {Us, LookupMaxUs, LookupMedianUs, Lookups} (lookups started within the
%% ingest).
ingest(S, Shape) ->
    Self = self(),
    R = spawn_link(fun() -> reader(Self, []) end),
    {D0, D1} = disconnect(S, Shape),
    T0 = now_us(),
    true = net_kernel:connect_node(S),
    poll(Shape),
    T1 = now_us(),
    R ! stop,
    Samples = receive {samples, R, L} -> L end,
    {Max, Med, N} = latencies(Samples, T0, T1),
    {DMax, DMed, DN} = latencies(Samples, D0, D1),
    {T1 - T0, Max, Med, N, D1 - D0, DMax, DMed, DN}.

%% Memory the node holds for S's Shape after an ingest: disconnect from S
%% (which holds Shape), wait until its members are gone and the scope is
%% idle, collect every process's garbage and read erlang:memory(total);
%% connect, wait until Shape is here and the scope is idle, collect again
%% and read again. Returns the difference in bytes (the scope's state, its
%% monitors, the connection: everything the node allocated for the view).
ingest_memory(S, Shape) ->
    _ = disconnect(S, Shape),
    M0 = settled_memory(),
    true = net_kernel:connect_node(S),
    poll(Shape),
    wait_idle(),
    M1 = settled_memory(),
    M1 - M0.

settled_memory() ->
    [erlang:garbage_collect(P) || P <- processes()],
    erlang:memory(total).

%% {Max, Median, Count} of the lookups started within [T0, T1].
latencies(Samples, T0, T1) ->
    In = lists:sort([Lat || {At, Lat} <- Samples, At >= T0, At =< T1]),
    case In of
        [] -> {0, 0, 0};
        _ -> {lists:last(In), lists:nth((length(In) + 1) div 2, In), length(In)}
    end.

%% Disconnects from S, waits until S's members are gone and the scope is
%% idle; again if something connected to S meanwhile. Returns when the
%% (last) disconnect started and when the members were gone (polled every
%% ms).
%%
%% Genuine cpg can connect again by itself right after a disconnect: an
%% event of the connection just closed, handled late by one of the two
%% scopes (a nodeup, whose exchange is a cast to the other node, or the
%% other's exchange, which monitors its pids), sets up a new connection
%% (which of the two was not traced); S's exchange then brings the
%% members back. Waiting for them to go would
%% then never end (the BEAM -> BEAM ingest runs that hung, two in three
%% for 100k x 1 on one machine): so while they are here and S is
%% connected again, disconnect again, and time the node down from there.
disconnect(S, Shape) ->
    D0 = now_us(),
    erlang:disconnect_node(S),
    case gone(S, Shape) of
        reconnected -> disconnect(S, Shape);
        ok ->
            D1 = now_us(),
            wait_idle(),
            case lists:member(S, nodes()) of
                true -> disconnect(S, Shape);
                false -> {D0, D1}
            end
    end.

%% Until Shape's groups are gone: the first group polled every ms (cpg
%% drops a node's members in one go), then all of them counted (which
%% copies every name: not every ms). `reconnected` if S is connected again
%% while its members are still here.
gone(S, Shape) ->
    case cpg:get_members(?SCOPE, name(0), infinity) of
        {ok, _, _} ->
            case lists:member(S, nodes()) of
                true -> reconnected;
                false -> receive after 1 -> gone(S, Shape) end
            end;
        {error, _} ->
            case groups() of
                0 -> ok;
                _ -> receive after 5 -> gone(S, Shape) end
            end
    end.

%% Connects to S (which holds Shape), then waits until this node's scope
%% holds Shape too and is idle.
settle(S, Shape) ->
    true = net_kernel:connect_node(S),
    poll(Shape),
    wait_idle().

%% Until the scope's mailbox is empty: the 'DOWN's of the remote members
%% a disconnect leaves behind are handled before the clock starts.
wait_idle() ->
    _ = cpg:which_groups(?SCOPE, self(), infinity),
    case process_info(whereis(?SCOPE), message_queue_len) of
        {message_queue_len, 0} -> ok;
        _ -> receive after 5 -> wait_idle() end
    end.

reader(Parent, Acc) ->
    receive
        stop -> Parent ! {samples, self(), Acc}
    after 1 ->
        T = now_us(),
        {ok, _, _} = cpg:get_closest_pid(?SCOPE, "reader", infinity),
        reader(Parent, [{T, now_us() - T} | Acc])
    end.

%% Term codec: ns per term_to_binary / binary_to_term of each message,
%% Runs times; prints "codec.<msg>.<op> ns" lines. `decode_msg` decodes
%% the message as a received SEND carries it, as ours does: the control
%% tuple {2, '', ToPid} and the payload, one binary_to_term each (each
%% its own binary: no `[used]` option nor sub-binary to find where the
%% payload starts). ToPid is a pid of this node, as a receiver's is (an
%% other node's pid costs BEAM an external pid and a node lookup).
%% The pid is one of node 'cpg_bench_node@localhost' (as a pid from
%% another node arrives), as on our side.
%% The scope of Node hands out its state (`cpg_data:get_groups/1`'s call),
%% then every group's name (`which_groups`): `{StateMs, NamesMs}`, the ms
%% of a call, the reply decoded here included, each the median of 5 after
%% one to warm up.
state_call(Node) ->
    S = {?SCOPE, Node},
    Median = fun(Req, Check) ->
                     Check(gen_server:call(S, Req, ?T)),
                     Ts = [begin
                               T0 = now_us(),
                               Check(gen_server:call(S, Req, ?T)),
                               now_us() - T0
                           end || _ <- lists:seq(1, 5)],
                     lists:nth(3, lists:sort(Ts)) / 1000
             end,
    {Median(cpg_data, fun({trie, _}) -> ok end),
     Median(which_groups, fun([_ | _]) -> ok end)}.

codec([Runs]) ->
    N = list_to_integer(atom_to_list(Runs)),
    Node = <<"cpg_bench_node@localhost">>,
    Pid = binary_to_term(<<131, 88, 119, (byte_size(Node)), Node/binary,
                           82:32, 0:32, 1:32>>),
    Ctl = term_to_binary({2, '', self()}),
    Msgs = [{join, {'$gen_cast', {join, "group/name", Pid}}},
            {exchange, {'$gen_cast', {exchange, binary_to_atom(Node),
                                      [{"group/" ++ integer_to_list(I), [Pid]}
                                       || I <- lists:seq(1, 1000)]}}},
            {bin1k, {m, binary:copy(<<7>>, 1024)}},
            {small, {m, 1}}],
    lists:foreach(
      fun(_) ->
              [begin
                   Bin = term_to_binary(T),
                   out("codec." ++ atom_to_list(K) ++ ".encode",
                       per_op(fun() -> term_to_binary(T) end)),
                   out("codec." ++ atom_to_list(K) ++ ".decode",
                       per_op(fun() -> binary_to_term(Bin) end)),
                   out("codec." ++ atom_to_list(K) ++ ".decode_msg",
                       per_op(fun() -> binary_to_term(Ctl), binary_to_term(Bin) end))
               end || {K, T} <- Msgs]
      end, lists:seq(1, N)),
    ok.

out(Key, V) -> io:format("~s ~.1f~n", [Key, float(V)]).

%% ns per call of F, calling it for about 200 ms (after a warm-up).
per_op(F) ->
    loop(F, 1000),
    T0 = erlang:monotonic_time(nanosecond),
    loop(F, 1000),
    One = max(1, (erlang:monotonic_time(nanosecond) - T0) div 1000),
    N = max(1000, 200000000 div One),
    T1 = erlang:monotonic_time(nanosecond),
    loop(F, N),
    (erlang:monotonic_time(nanosecond) - T1) / N.

loop(_, 0) -> ok;
loop(F, I) -> F(), loop(F, I - 1).
