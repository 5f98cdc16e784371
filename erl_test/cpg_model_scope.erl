%% A model of a cpg scope process, written for the tests from the protocol
%% description (no genuine cpg code): CI has no genuine cpg, so the
%% schedule test runs the BEAM side of the cluster on this. It runs at
%% node_type `all` (start/1) or as given (start/2), kept where cpg keeps it
%% (the application env `cpg`/`node_type`, which a peer may ask for, read
%% at init and by reset/1 only, as cpg reads it): at
%% `visible`, hidden nodes are not listened to (their exchanges ignored,
%% our writes not cast to them, their pids dropped from merges), but their
%% casts are applied and their `{new, Node}` answered, as cpg does.
%%
%% It keeps, per group, the history list of member pids (newest first, one
%% copy per join). The local and remote lists of the description are the
%% history filtered by node(Pid) =:= node() (joins add copies at the newest
%% end of both, leaves remove the oldest copy of both, a merge adds or
%% removes copies of a pid at the newest end of both: the filtered history
%% is always the local or remote list), so only the history is stored.
%%
%% The protocol, between the scope processes registered as Scope on every
%% node listened to (at `all`, visible and hidden nodes alike, i.e.
%% nodes(connected); at `visible`, nodes()):
%% - casts {join, Name, Pid}, {join_counts, [{Name, Count}], Pid},
%%   {leave, Name, Pid}, {leave_counts, [{Name, Count}], Pid}, {leave, Pid}
%%   for the owner's writes, each applied as a remote change;
%% - the cast {exchange, Node, [{Name, History}]} with the sender's whole
%%   view, sent on nodeup and in answer to the plain message {new, Node}
%%   (which a scope sends to every node when it starts); merged as below.
%% Members die silently: every scope monitors every pid it stores, remote
%% ones included, and a nodedown drops all the members of that node.
-module(cpg_model_scope).
-behaviour(gen_server).

-export([start/1, start/2, stop/1, reset/1,
         join/3, join_counts/3, leave/3, leave/2,
         get_members/2, get_local_members/2, get_remote_members/2,
         which_groups/1, count/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-record(state, {scope :: atom(),
                listen :: all | visible,  % the node_type at init or last reset
                groups = #{} :: #{term() => [pid()]},    % Name => History
                monitors = #{} :: #{pid() => reference()}}).

%%% Client API (the shapes of cpg's replies)

%% Starts the scope registered as Scope, not linked to the caller (the
%% tests start it from a short-lived rpc process).
start(Scope) -> start(Scope, all).

start(Scope, NodeType) when NodeType =:= all; NodeType =:= visible ->
    ok = application:set_env(cpg, node_type, NodeType),
    gen_server:start({local, Scope}, ?MODULE, Scope, []).

stop(Scope) -> gen_server:stop(Scope).

%% cpg:reset/1 after the node_type env changed, as cpg's listen_reset
%% does: from visible to all, the scope listens to hidden nodes from now on
%% and asks each for its state ({new, Node}); from all to visible, it stops
%% and each hidden node counts as gone (its members dropped, nothing sent
%% to it).
reset(Scope) -> gen_server:call(Scope, reset).

%% Writes take a local pid only: the owner node alone writes (rule 1).
join(Scope, Name, Pid) when node(Pid) =:= node() ->
    gen_server:call(Scope, {join, Name, Pid}).

join_counts(Scope, Counts, Pid) when node(Pid) =:= node() ->
    gen_server:call(Scope, {join_counts, Counts, Pid}).

%% ok, or error when Pid is not a member of Name.
leave(Scope, Name, Pid) when node(Pid) =:= node() ->
    gen_server:call(Scope, {leave, Name, Pid}).

%% Leaves every group: ok, or error when Pid is in none.
leave(Scope, Pid) when node(Pid) =:= node() ->
    gen_server:call(Scope, {leave, Pid}).

%% {ok, Name, Pids} newest first, or {error, {no_such_group, Name}}.
get_members(Scope, Name) -> gen_server:call(Scope, {get_members, Name, all}).
get_local_members(Scope, Name) -> gen_server:call(Scope, {get_members, Name, local}).
get_remote_members(Scope, Name) -> gen_server:call(Scope, {get_members, Name, remote}).

which_groups(Scope) -> gen_server:call(Scope, which_groups).

%% How many times Pid joined Name (cpg's join_count).
count(Scope, Name, Pid) -> gen_server:call(Scope, {count, Name, Pid}).

%%% The scope process

init(Scope) ->
    Listen = node_type(),
    ok = monitor_peers(true, Listen),
    %% "I just started, send me your state."
    [{Scope, N} ! {new, node()} || N <- peers(Listen)],
    {ok, #state{scope = Scope, listen = Listen}}.

handle_call({join, Name, Pid}, _, S) ->
    {reply, ok, write({join, Name, Pid}, S)};
handle_call({join_counts, Counts, Pid}, _, S) ->
    case lists:all(fun({_, C}) -> is_integer(C) andalso C > 0 end, Counts) of
        true -> {reply, ok, write({join_counts, Counts, Pid}, S)};
        false -> {reply, error, S}
    end;
handle_call({leave, Name, Pid}, _, S) ->
    case count_in(Name, Pid, S) > 0 of
        true -> {reply, ok, write({leave, Name, Pid}, S)};
        false -> {reply, error, S}
    end;
handle_call({leave, Pid}, _, S) ->
    case groups_of(Pid, S) of
        [] -> {reply, error, S};
        _ -> {reply, ok, write({leave, Pid}, S)}
    end;
handle_call({get_members, Name, Which}, _, #state{groups = G} = S) ->
    Pids = [P || P <- maps:get(Name, G, []), is_kind(Which, P)],
    Reply = case Pids of
        [] -> {error, {no_such_group, Name}};
        _ -> {ok, Name, Pids}
    end,
    {reply, Reply, S};
handle_call(which_groups, _, #state{groups = G} = S) ->
    {reply, lists:sort(maps:keys(G)), S};
handle_call({which_groups, Pid}, _, S) ->
    %% cpg's which_groups(Scope, Pid) (a polling node's call after its
    %% {new, Node}).
    {reply, groups_of(Pid, S), S};
handle_call({count, Name, Pid}, _, S) ->
    {reply, count_in(Name, Pid, S), S};
handle_call(reset, _, #state{scope = Scope, listen = Old} = S) ->
    Hidden = [N || N <- nodes(hidden), not ignored(N)],
    case node_type() of
        Old ->
            {reply, ok, S};  % unchanged: nothing to do
        all ->
            ok = monitor_peers(true, all),
            ok = monitor_peers(false, visible),
            [{Scope, N} ! {new, node()} || N <- Hidden],
            {reply, ok, S#state{listen = all}};
        visible ->
            ok = monitor_peers(true, visible),
            ok = monitor_peers(false, all),
            {reply, ok, lists:foldl(fun node_gone/2, S#state{listen = visible}, Hidden)}
    end.

%% A remote owner's write, or a peer's state.
handle_cast({exchange, Node, HistoryL}, #state{listen = Listen} = S) ->
    %% Only from a node we listen to (any connected node at `all`, a
    %% visible one at `visible`).
    case lists:member(Node, peers(Listen)) of
        true -> {noreply, lists:foldl(fun merge/2, S, HistoryL)};
        false -> {noreply, S}
    end;
handle_cast(Request, S) ->
    {noreply, apply_write(Request, S)}.

handle_info({new, Node}, S) ->
    send_exchange(Node, S),
    {noreply, S};
handle_info({nodeup, Node, _}, S) ->
    case ignored(Node) of
        true -> ok;
        false -> send_exchange(Node, S)
    end,
    {noreply, S};
handle_info({nodedown, Node, _}, S) ->
    {noreply, node_gone(Node, S)};
handle_info({'DOWN', _, process, Pid, _}, #state{monitors = M} = S) ->
    {noreply, remove_all(Pid, S#state{monitors = maps:remove(Pid, M)})};
handle_info(_, S) ->
    {noreply, S}.

%% Every member on Node goes (their monitors fire noconnection too).
node_gone(Node, #state{groups = G} = S) ->
    Pids = lists:usort([P || H <- maps:values(G), P <- H, node(P) =:= Node]),
    lists:foldl(fun remove_all/2, S, Pids).

%%% Writes

%% A local write: applied here, then cast to every other node's scope.
write(Request, #state{scope = Scope, listen = Listen} = S) ->
    [gen_server:cast({Scope, N}, Request) || N <- peers(Listen)],
    apply_write(Request, S).

apply_write({join, Name, Pid}, S) ->
    add(Name, Pid, 1, S);
apply_write({join_counts, Counts, Pid}, S) ->
    lists:foldl(fun({Name, C}, Acc) -> add(Name, Pid, C, Acc) end, S, Counts);
apply_write({leave, Name, Pid}, S) when is_pid(Pid) ->
    %% Ignored unless Pid is known in Name.
    remove_oldest(Name, Pid, 1, S);
apply_write({leave_counts, Counts, Pid}, S) ->
    %% All or nothing: every name must hold Pid.
    case lists:all(fun({Name, _}) -> count_in(Name, Pid, S) > 0 end, Counts) of
        true -> lists:foldl(fun({Name, C}, Acc) ->
                                    remove_oldest(Name, Pid, C, Acc)
                            end, S, Counts);
        false -> S
    end;
apply_write({leave, Pid}, S) when is_pid(Pid) ->
    remove_all(Pid, S);
apply_write(_Junk, S) ->
    S.

%% Count copies of Pid at the newest end of Name's history.
add(_, _, C, S) when not is_integer(C); C =< 0 -> S;
add(Name, Pid, C, #state{groups = G} = S) ->
    H = lists:duplicate(C, Pid) ++ maps:get(Name, G, []),
    monitor_pid(Pid, S#state{groups = G#{Name => H}}).

%% Removes up to C copies of Pid, oldest first (a leave).
remove_oldest(Name, Pid, C, #state{groups = G} = S) ->
    H = lists:reverse(delete_n(C, Pid, lists:reverse(maps:get(Name, G, [])))),
    set_history(Name, H, S).

%% Removes up to C copies of Pid, newest first (a merge lowering a count).
remove_newest(Name, Pid, C, #state{groups = G} = S) ->
    set_history(Name, delete_n(C, Pid, maps:get(Name, G, [])), S).

%% Every copy of Pid from every group.
remove_all(Pid, #state{groups = G} = S) ->
    lists:foldl(fun(Name, Acc) ->
                        set_history(Name, [P || P <- maps:get(Name, G), P =/= Pid], Acc)
                end, S, groups_of(Pid, S)).

%% An empty group is deleted; a pid in no group any more is not monitored.
set_history(Name, H, #state{groups = G} = S) ->
    G1 = case H of
        [] -> maps:remove(Name, G);
        _ -> G#{Name => H}
    end,
    unmonitor_gone(S#state{groups = G1}, maps:get(Name, G, [])).

%%% Merge of a peer's exchange (rule 2; never deletes what the peer omits)

merge({Name, History}, #state{groups = G, listen = Listen} = S) ->
    %% Only pids of this node or of a node we listen to count.
    Known = fun(P) -> node(P) =:= node() orelse lists:member(node(P), peers(Listen)) end,
    case maps:is_key(Name, G) of
        false ->
            %% A new group: the peer's history as it is, pids of unknown
            %% nodes left out.
            case [P || P <- History, Known(P)] of
                [] -> S;
                H -> lists:foldl(fun monitor_pid/2,
                                 S#state{groups = G#{Name => H}}, lists:usort(H))
            end;
        true ->
            %% A group we have: every pid the peer lists gets the peer's count
            %% (our own local pids too: this repairs a restarted scope);
            %% pids are visited in term order.
            lists:foldl(
              fun(P, Acc) ->
                      case Known(P) of
                          false -> Acc;
                          true ->
                              D = count_list(P, History) - count_in(Name, P, Acc),
                              if D > 0 -> add(Name, P, D, Acc);
                                 D < 0 -> remove_newest(Name, P, -D, Acc);
                                 true -> Acc
                              end
                      end
              end, S, lists:usort(History))
    end.

send_exchange(Node, #state{scope = Scope, groups = G}) ->
    case maps:to_list(G) of
        [] -> ok;  % nothing is sent for an empty view
        HistoryL -> gen_server:cast({Scope, Node}, {exchange, node(), HistoryL})
    end.

%%% Monitors: one per stored pid, local or remote

monitor_pid(Pid, #state{monitors = M} = S) ->
    case maps:is_key(Pid, M) of
        true -> S;
        false -> S#state{monitors = M#{Pid => erlang:monitor(process, Pid)}}
    end.

unmonitor_gone(#state{monitors = M} = S, Pids) ->
    Gone = [P || P <- lists:usort(Pids), maps:is_key(P, M), groups_of(P, S) =:= []],
    lists:foldl(fun(P, #state{monitors = Acc} = SAcc) ->
                        erlang:demonitor(maps:get(P, Acc), [flush]),
                        SAcc#state{monitors = maps:remove(P, Acc)}
                end, S, Gone).

%%% Helpers

%% The nodes whose scopes we talk to at Listen (the node_type the scope
%% read at init or its last reset, as cpg keeps it): every connected node,
%% visible or hidden (only visible ones at `visible`), except
%% release-script nodes (Name_script_process...).
peers(Listen) ->
    Nodes = case Listen of
        all -> nodes(connected);
        visible -> nodes()
    end,
    [N || N <- Nodes, not ignored(N)].

%% nodeup/nodedown of the nodes the node_type listens to (Flag: on or off).
monitor_peers(Flag, NodeType) ->
    Types = case NodeType of
        all -> [{node_type, all}];
        visible -> []
    end,
    net_kernel:monitor_nodes(Flag, Types ++ [nodedown_reason]).

node_type() ->
    case application:get_env(cpg, node_type) of
        {ok, visible} -> visible;
        _ -> all
    end.

ignored(Node) ->
    [Local | _] = string:split(atom_to_list(node()), "@"),
    [Name | _] = string:split(atom_to_list(Node), "@"),
    lists:prefix(Local ++ "_script_process", Name).

is_kind(all, _) -> true;
is_kind(local, P) -> node(P) =:= node();
is_kind(remote, P) -> node(P) =/= node().

groups_of(Pid, #state{groups = G}) ->
    [Name || {Name, H} <- maps:to_list(G), lists:member(Pid, H)].

count_in(Name, Pid, #state{groups = G}) -> count_list(Pid, maps:get(Name, G, [])).

count_list(Pid, L) -> length([P || P <- L, P =:= Pid]).

%% Drops the first N copies of X from L.
delete_n(0, _, L) -> L;
delete_n(_, _, []) -> [];
delete_n(N, X, [X | T]) -> delete_n(N - 1, X, T);
delete_n(N, X, [Y | T]) -> [Y | delete_n(N, X, T)].
