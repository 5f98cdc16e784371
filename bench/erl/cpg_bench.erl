%% The BEAM side of scripts/bench.sh: the same workloads as
%% examples/cpg_bench.rs, run against genuine cpg (its code on the code
%% path, e.g. -pa $CPG_EBIN). Prints one "key value" line per figure and
%% run, with the keys of the Rust side; the script merges them.
%%
%%   erl -noshell -pa CPG_EBIN... -pa DIR -s cpg_bench main RUNS PARTS -s init stop
%%
%% Units: lookups ns per call (with R readers: wall time x min(R, schedulers)
%% / calls), joins and leaves per second, the quadratic paths ms, memory
%% bytes per membership (the scope process's memory after GC, less the empty
%% scope's). "data" keys go through cpg_data on a copy of the state
%% (cpg_data:get_groups/1), "call" keys through the scope (gen_server).
-module(cpg_bench).
-export([main/1]).

-define(SCOPE, cpg_default_scope).

main([Runs | Parts]) ->
    {ok, _} = application:ensure_all_started(cpg),
    N = list_to_integer(atom_to_list(Runs)),
    Want = fun(P) -> Parts =:= [] orelse lists:member(P, Parts) end,
    lists:foreach(fun(_) -> run(Want) end, lists:seq(1, N)),
    ok.

run(Want) ->
    case Want(lookup) of true -> lookups(); false -> ok end,
    case Want(pattern) of true -> patterns(1000), patterns(100000); false -> ok end,
    case Want(join) of true -> joins_and_leaves(); false -> ok end,
    case Want(quad) of true -> quadratic([10000]); false -> ok end,
    case Want(quad30) of true -> quadratic([30000]); false -> ok end,
    case Want(mem) of
        true ->
            out("mem.dg_dp.100000", memory(100000, 1)),
            out("mem.g100.10000", memory(10000, 100));
        false -> ok
    end,
    case Want(remote) of true -> remote_down(); false -> ok end.

out(Key, V) ->
    io:format("~s ~.1f~n", [Key, float(V)]).

procs(N) ->
    [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, N)].

stop(Pids) ->
    [begin Ref = monitor(process, P), P ! stop,
           receive {'DOWN', Ref, _, _, _} -> ok end end || P <- Pids],
    ok.

%% ns per call of F(I) with Readers processes doing Total calls between them.
per_call(1, Total, F) ->
    loop(F, min(Total, 2000)),
    T0 = erlang:monotonic_time(nanosecond),
    loop(F, Total),
    (erlang:monotonic_time(nanosecond) - T0) / Total;
per_call(Readers, Total, F) ->
    Each = Total div Readers,
    Self = self(),
    %% each reader warms up first (its copy of F's state settles in its
    %% heap: the first GCs copy it), then all start together
    Pids = [spawn_link(fun() ->
                               loop(F, min(Each, 2000)),
                               erlang:garbage_collect(),
                               loop(F, min(Each, 2000)),
                               Self ! {ready, self()},
                               receive go -> ok end,
                               loop(F, Each),
                               Self ! {done, self()}
                       end) || _ <- lists:seq(1, Readers)],
    [receive {ready, P} -> ok end || P <- Pids],
    T0 = erlang:monotonic_time(nanosecond),
    [P ! go || P <- Pids],
    [receive {done, P} -> ok end || P <- Pids],
    Wall = erlang:monotonic_time(nanosecond) - T0,
    Wall * min(Readers, erlang:system_info(schedulers_online)) / (Each * Readers).

loop(_, 0) -> ok;
loop(F, I) -> F(I), loop(F, I - 1).

lookups() ->
    Sizes = [1, 10, 1000],
    Members = [{N, procs(N)} || N <- Sizes],
    [[ok = cpg:join("g" ++ integer_to_list(N), P) || P <- Ps] || {N, Ps} <- Members],
    Groups = cpg_data:get_groups(?SCOPE),
    lists:foreach(
      fun(N) ->
              Name = "g" ++ integer_to_list(N),
              Ops = [{"closest",
                      fun(_) -> {ok, _, _} = cpg_data:get_closest_pid(Name, Groups) end,
                      fun(_) -> {ok, _, _} = cpg:get_closest_pid(Name) end},
                     {"random",
                      fun(_) -> {ok, _, _} = cpg_data:get_random_pid(Name, Groups) end,
                      fun(_) -> {ok, _, _} = cpg:get_random_pid(Name) end},
                     {"members",
                      fun(_) -> {ok, _, _} = cpg_data:get_members(Name, Groups) end,
                      fun(_) -> {ok, _, _} = cpg:get_members(Name) end},
                     {"oldest",
                      fun(_) -> {ok, _, _} = cpg_data:get_oldest_pid(Name, Groups) end,
                      fun(_) -> {ok, _, _} = cpg:get_oldest_pid(Name) end},
                     {"newest",
                      fun(_) -> {ok, _, _} = cpg_data:get_newest_pid(Name, Groups) end,
                      fun(_) -> {ok, _, _} = cpg:get_newest_pid(Name) end}],
              [begin
                   DataCalls = if N =:= 1000 -> 50000; true -> 200000 end,
                   out(io_lib:format("lookup.~s.~b.r~b", [Op, N, R]),
                       per_call(R, DataCalls, Data)),
                   out(io_lib:format("call.~s.~b.r~b", [Op, N, R]),
                       per_call(R, 20000, Call))
               end || {Op, Data, Call} <- Ops, R <- [1, 8]]
      end, Sizes),
    [[ok = cpg:leave("g" ++ integer_to_list(N), P) || P <- Ps] || {N, Ps} <- Members],
    [stop(Ps) || {_, Ps} <- Members],
    ok.

%% the names of the pattern_unique rows (as examples/cpg_bench.rs).
unique_names(N) ->
    ["p" ++ integer_to_list((J * 7919) rem N) ++ "/job" ++ integer_to_list(J)
     || J <- lists:seq(0, 99999)].

%% pattern groups "p<i>/*", one member each; get_closest_pid("p<j>/job")
%% (1000 names in turn), and of 100k names in turn (pattern_unique).
patterns(N) ->
    Ps = procs(N),
    lists:foreach(fun({I, P}) -> ok = cpg:join("p" ++ integer_to_list(I) ++ "/*", P) end,
                  lists:zip(lists:seq(0, N - 1), Ps)),
    Groups = cpg_data:get_groups(?SCOPE),
    K = min(1000, N),
    Names = list_to_tuple(["p" ++ integer_to_list(J * (N div K)) ++ "/job"
                           || J <- lists:seq(0, K - 1)]),
    Data = fun(I) -> {ok, _, _} = cpg_data:get_closest_pid(element(I rem K + 1, Names), Groups) end,
    Call = fun(I) -> {ok, _, _} = cpg:get_closest_pid(element(I rem K + 1, Names)) end,
    out(io_lib:format("pattern.~b.r1", [N]), per_call(1, 200000, Data)),
    out(io_lib:format("pattern.~b.r8", [N]), per_call(8, 200000, Data)),
    out(io_lib:format("pattern_call.~b.r1", [N]), per_call(1, 20000, Call)),
    %% 100k names, each looked up once a round: "p<(J * 7919) rem N>/job<J>"
    Unique = list_to_tuple(unique_names(N)),
    U = tuple_size(Unique),
    Once = fun(I) -> {ok, _, _} = cpg_data:get_closest_pid(element(I rem U + 1, Unique), Groups) end,
    out(io_lib:format("pattern_unique.~b.r1", [N]), per_call(1, 200000, Once)),
    stop(Ps),
    wait_empty().

wait_empty() ->
    case catch cpg:which_groups(?SCOPE, infinity) of
        [] -> ok;
        _ -> timer:sleep(10), wait_empty()
    end.

rate(N, T0) ->
    N / ((erlang:monotonic_time(nanosecond) - T0) / 1.0e9).

ms(T0) ->
    (erlang:monotonic_time(nanosecond) - T0) / 1.0e6.

joins_and_leaves() ->
    lists:foreach(
      fun(N) ->
              Ps = procs(N),
              Items = [{"g" ++ integer_to_list(I), P}
                       || {I, P} <- lists:zip(lists:seq(1, N), Ps)],
              T0 = erlang:monotonic_time(nanosecond),
              [ok = cpg:join(G, P) || {G, P} <- Items],
              out(io_lib:format("join.dg_dp.~b", [N]), rate(N, T0)),
              T1 = erlang:monotonic_time(nanosecond),
              [ok = cpg:leave(G, P) || {G, P} <- Items],
              out(io_lib:format("leave.dg_dp.~b", [N]), rate(N, T1)),
              T2 = erlang:monotonic_time(nanosecond),
              [ok = cpg:join("g", P) || P <- Ps],
              out(io_lib:format("join.g1_dp.~b", [N]), rate(N, T2)),
              stop(Ps),
              wait_empty()
      end, [10000, 100000]).

quadratic(Sizes) ->
    lists:foreach(
      fun(N) ->
              [P] = procs(1),
              T0 = erlang:monotonic_time(nanosecond),
              [ok = cpg:join("g" ++ integer_to_list(I), P) || I <- lists:seq(1, N)],
              out(io_lib:format("quad.dg_1p_join.~b", [N]), ms(T0)),
              stop([P]),
              wait_empty(),
              Ps = procs(N),
              [ok = cpg:join("g", Q) || Q <- Ps],
              T1 = erlang:monotonic_time(nanosecond),
              [ok = cpg:leave("g", Q) || Q <- Ps],
              out(io_lib:format("quad.g1_dp_leave.~b", [N]), ms(T1)),
              stop(Ps),
              wait_empty()
      end, Sizes).

%% Groups groups of Members distinct pids; at most 100k pids, membership I
%% is pid I rem 100k in group I div Members (10k x 100: each pid in 10 groups).
memory(Groups, Members) ->
    Scope = whereis(?SCOPE),
    wait_empty(),
    true = erlang:garbage_collect(Scope),
    {memory, M0} = erlang:process_info(Scope, memory),
    NP = min(100000, Groups * Members),
    Ps = list_to_tuple(procs(NP)),
    [ok = cpg:join("g" ++ integer_to_list(I div Members), element(I rem NP + 1, Ps))
     || I <- lists:seq(0, Groups * Members - 1)],
    true = erlang:garbage_collect(Scope),
    {memory, M1} = erlang:process_info(Scope, memory),
    stop(tuple_to_list(Ps)),
    wait_empty(),
    (M1 - M0) / (Groups * Members).

%% N members of one group on a peer node die at once: ms until the scope
%% here has removed them all (needs distribution: erl -sname).
remote_down() ->
    case node() of
        nonode@nohost -> ok;
        _ -> [remote_down(N) || N <- [10000]], ok
    end.

remote_down(N) ->
    Paths = [filename:dirname(code:which(M)) || M <- [cpg, trie, quickrand, cpg_bench]],
    {ok, Peer, Node} = peer:start_link(#{name => peer:random_name(),
                                         args => lists:append([["-pa", D] || D <- Paths])}),
    {ok, _} = erpc:call(Node, application, ensure_all_started, [cpg]),
    wait_connected(Node),
    Owner = erpc:call(Node, erlang, spawn,
                      [fun() ->
                               Ps = procs(N),
                               [ok = cpg:join("remote", P) || P <- Ps],
                               receive kill -> [exit(P, kill) || P <- Ps] end,
                               receive never -> ok end
                       end]),
    wait_members("remote", N),
    T0 = erlang:monotonic_time(nanosecond),
    Owner ! kill,
    wait_members("remote", 0),
    out(io_lib:format("quad.remote_down_g1.~b", [N]), ms(T0)),
    peer:stop(Peer).

wait_connected(Node) ->
    case lists:member(Node, nodes()) of
        true -> ok;
        false -> timer:sleep(10), wait_connected(Node)
    end.

wait_members(Name, N) ->
    Count = case cpg:get_members(Name) of
                {ok, _, Ps} -> length(Ps);
                {error, _} -> 0
            end,
    case Count of
        N -> ok;
        _ -> timer:sleep(1), wait_members(Name, N)
    end.
