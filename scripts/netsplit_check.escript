#!/usr/bin/env escript
%%! -hidden
%% The views check of scripts/netsplit.sh (started with ERL_FLAGS="-setcookie C").
%%
%%   netsplit_check.escript Self Mod Timeout Group RustNodes BeamNodes [Viewers]
%%
%% Node names are full and comma-separated ("none": no node). Waits until
%% the view of Group on every viewer (default: every node given) equals
%% the union of every given node's own members: Rust nodes are asked
%% through their scope process, BEAM nodes through Mod (cpg or
%% cpg_model_scope, scope first). Prints "converged Ms (N members)", or
%% "diverged" with the views and exits 1.
main([Self, Mod, TimeoutS, G, Rust, Beam]) -> main([Self, Mod, TimeoutS, G, Rust, Beam, "all"]);
main([Self, Mod, TimeoutS, G, Rust, Beam, Viewers]) ->
    {ok, _} = net_kernel:start([list_to_atom(Self), longnames]),
    Names = fun(S) -> [list_to_atom(N) || N <- string:tokens(S, ","), N =/= "none"] end,
    R = Names(Rust),
    B = Names(Beam),
    V = case Viewers of "all" -> R ++ B; _ -> Names(Viewers) end,
    T0 = erlang:monotonic_time(millisecond),
    loop(list_to_atom(Mod), G, R, B, V, T0, T0 + list_to_integer(TimeoutS) * 1000).

sorted({ok, _, Ps}) -> lists:sort(Ps);
sorted({error, {no_such_group, _}}) -> [];
sorted(Other) -> {bad, Other}.

rust(F, G, N) -> sorted(catch gen_server:call({cpg_default_scope, N}, {F, G}, 2000)).
beam(Mod, F, G, N) -> sorted(catch rpc:call(N, Mod, F, [cpg_default_scope, G], 2000)).

loop(Mod, G, R, B, V, T0, Deadline) ->
    Owns = [rust(get_local_members, G, N) || N <- R] ++ [beam(Mod, get_local_members, G, N) || N <- B],
    Expected = lists:sort(lists:append([O || O <- Owns, is_list(O)])),
    Views = [{N, rust(get_members, G, N)} || N <- R, lists:member(N, V)]
        ++ [{N, beam(Mod, get_members, G, N)} || N <- B, lists:member(N, V)],
    Ok = lists:all(fun erlang:is_list/1, Owns) andalso lists:all(fun({_, X}) -> X =:= Expected end, Views),
    Now = erlang:monotonic_time(millisecond),
    if Ok -> io:format("converged ~p (~p members)~n", [Now - T0, length(Expected)]);
       Now > Deadline ->
            io:format("diverged: own members ~p~n", [shown(Owns)]),
            [io:format("  ~p: ~p~n", [N, shown(X)]) || {N, X} <- Views],
            halt(1);
       true -> timer:sleep(100), loop(Mod, G, R, B, V, T0, Deadline)
    end.

%% Pids with their node's creation (`<0.104.0>/1796690275`): a restarted
%% node's pids print as its last incarnation's did.
shown(L) when is_list(L) -> [shown(X) || X <- L];
shown(P) when is_pid(P) ->
    B = term_to_binary(P),
    <<Creation:32>> = binary:part(B, byte_size(B) - 4, 4),
    lists:flatten(io_lib:format("~p/~p", [P, Creation]));
shown(X) -> X.
