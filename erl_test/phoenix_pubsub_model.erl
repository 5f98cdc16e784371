%% Phoenix.PubSub's PG2 adapter as it puts broadcasts on the wire (2.1.1
%% onwards; pool size 1 is 2.0), for a node where Phoenix itself is not
%% installed. Runs on an erl node with Elixir's ebin on the path: the local
%% subscriptions live in an Elixir `Registry`, as Phoenix keeps them. Every
%% wire shape is in this module. `phoenix_pubsub_genuine` has the same
%% interface over Phoenix.PubSub itself: the tests use it when
%% PHOENIX_PUBSUB_EBIN names a Phoenix.PubSub build.
%%
%% - scope: 'Elixir.Phoenix.PubSub' (pg:start_link(Phoenix.PubSub) in
%%   Phoenix's application);
%% - groups: [Adapter, Adapter_2, ..., Adapter_N], Adapter being
%%   'Elixir.<Name>.Adapter'; one worker per group per node, registered
%%   under the group atom and a member of the group;
%% - broadcast: the caller picks one group (phash2(self(), N)) and sends
%%   {forward_to_local, Topic, Msg, Dispatcher} to its members on other
%%   nodes, then dispatches locally; a worker dispatches what it receives.
-module(phoenix_pubsub_model).
-export([start/2, groups/1, broadcast/3, direct_broadcast/4, subscriber/2, received/1]).

-define(SCOPE, 'Elixir.Phoenix.PubSub').
-define(DISPATCHER, 'Elixir.Phoenix.PubSub').

%% Starts instance Name (an atom such as 'Elixir.MyApp.PubSub') with
%% PoolSize workers; returns the group atoms.
start(Name, PoolSize) ->
    {ok, _} = application:ensure_all_started(elixir),
    Parent = self(),
    Owner = spawn(fun() ->
        case whereis(?SCOPE) of
            undefined -> {ok, _} = pg:start(?SCOPE);
            _ -> ok
        end,
        {ok, _} = 'Elixir.Registry':start_link([{keys, duplicate}, {name, Name}]),
        Groups = groups(Name, PoolSize),
        persistent_term:put({?MODULE, Name}, list_to_tuple(Groups)),
        [spawn(fun() -> worker(Name, G) end) || G <- Groups],
        Parent ! {self(), Groups},
        receive stop -> ok end
    end),
    receive {Owner, Groups} -> wait_workers(Groups), Groups after 10000 -> timeout end.

%% The pool's group atoms.
groups(Name) ->
    tuple_to_list(persistent_term:get({?MODULE, Name})).

wait_workers(Groups) ->
    case lists:all(fun(G) -> lists:member(whereis(G), pg:get_local_members(?SCOPE, G)) end, Groups) of
        true -> ok;
        false -> timer:sleep(20), wait_workers(Groups)
    end.

groups(Name, PoolSize) ->
    Adapter = list_to_atom(atom_to_list(Name) ++ ".Adapter"),
    [Adapter | [list_to_atom(atom_to_list(Adapter) ++ "_" ++ integer_to_list(I))
                || I <- lists:seq(2, PoolSize)]].

worker(Name, Group) ->
    register(Group, self()),
    ok = pg:join(?SCOPE, Group, self()),
    worker_loop(Name).

worker_loop(Name) ->
    receive
        {forward_to_local, Topic, Msg, Dispatcher} when is_binary(Topic), is_atom(Dispatcher) ->
            local_broadcast(Name, Topic, Msg);
        _ -> ok
    end,
    worker_loop(Name).

%% Phoenix.PubSub.broadcast(Name, Topic, Msg) from the calling process.
broadcast(Name, Topic, Msg) ->
    Groups = persistent_term:get({?MODULE, Name}),
    Group = element(erlang:phash2(self(), tuple_size(Groups)) + 1, Groups),
    Forward = {forward_to_local, Topic, Msg, ?DISPATCHER},
    [P ! Forward || P <- pg:get_members(?SCOPE, Group), node(P) =/= node()],
    local_broadcast(Name, Topic, Msg).

%% Phoenix.PubSub.direct_broadcast(Name, Node, Topic, Msg) from the calling
%% process: the 4-tuple to the registered name of one group (picked as
%% broadcast picks it) on Node.
direct_broadcast(Name, Node, Topic, Msg) ->
    Groups = persistent_term:get({?MODULE, Name}),
    Group = element(erlang:phash2(self(), tuple_size(Groups)) + 1, Groups),
    {Group, Node} ! {forward_to_local, Topic, Msg, ?DISPATCHER},
    ok.

%% The default dispatcher: Msg to every local subscriber of Topic.
local_broadcast(Name, Topic, Msg) ->
    'Elixir.Registry':dispatch(Name, Topic, fun(Entries) -> [P ! Msg || {P, _} <- Entries] end),
    ok.

%% A process subscribed to Topic that records what it receives
%% (cpg_node_test_util's recorder).
subscriber(Name, Topic) ->
    cpg_node_test_util:spawn_recorder_after(fun() -> {ok, _} = 'Elixir.Registry':register(Name, Topic, nil) end).

%% What the subscriber P has received, oldest first.
received(P) ->
    cpg_node_test_util:recorded_pid(P).
