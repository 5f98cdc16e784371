%% The interface of `phoenix_pubsub_model` over genuine Phoenix.PubSub, for
%% the Phoenix.PubSub tests when PHOENIX_PUBSUB_EBIN names the ebin folder
%% of a Phoenix.PubSub build (2.1.1 to 2.2, whose pools the tests name; it
%% is not part of this repository): the same tests then run against
%% Phoenix itself. Runs on an erl node with Elixir's ebin and that folder
%% on the path.
-module(phoenix_pubsub_genuine).
-export([start/2, groups/1, broadcast/3, direct_broadcast/4, subscriber/2, received/1]).

-define(PUBSUB, 'Elixir.Phoenix.PubSub').

%% Starts Phoenix.PubSub instance Name (an atom such as
%% 'Elixir.MyApp.PubSub') with a pool of PoolSize, under a process that
%% outlives the caller; returns the pool's group atoms.
start(Name, PoolSize) ->
    {ok, _} = application:ensure_all_started(elixir),
    %% The application starts the pg scope 'Elixir.Phoenix.PubSub'; a build
    %% without its .app file gets the scope started here.
    case application:ensure_all_started(phoenix_pubsub) of
        {ok, _} -> ok;
        {error, _} -> {ok, _} = pg:start(?PUBSUB)
    end,
    Parent = self(),
    Owner = spawn(fun() ->
        {ok, _} = 'Elixir.Phoenix.PubSub.Supervisor':start_link(
                    [{name, Name}, {pool_size, PoolSize}]),
        Parent ! {self(), started},
        receive stop -> ok end
    end),
    receive {Owner, started} -> wait_workers(Name), groups(Name) after 10000 -> timeout end.

%% The pool's group atoms, as Phoenix keeps them (2.0 has one group, the
%% adapter's name, and keeps no list).
groups(Name) ->
    Adapter = adapter(Name),
    tuple_to_list(persistent_term:get(Adapter, {Adapter})).

adapter(Name) ->
    list_to_atom(atom_to_list(Name) ++ ".Adapter").

wait_workers(Name) ->
    Groups = groups(Name),
    case lists:all(fun(G) -> pg:get_local_members(?PUBSUB, G) =/= [] end, Groups) of
        true -> ok;
        false -> timer:sleep(20), wait_workers(Name)
    end.

%% Phoenix.PubSub.broadcast(Name, Topic, Msg) from the calling process.
broadcast(Name, Topic, Msg) ->
    ?PUBSUB:broadcast(Name, Topic, Msg).

%% Phoenix.PubSub.direct_broadcast(Node, Name, Topic, Msg).
direct_broadcast(Name, Node, Topic, Msg) ->
    ?PUBSUB:direct_broadcast(Node, Name, Topic, Msg).

%% A process subscribed to Topic that records what it receives
%% (cpg_node_test_util's recorder).
subscriber(Name, Topic) ->
    cpg_node_test_util:spawn_recorder_after(fun() -> ok = ?PUBSUB:subscribe(Name, Topic) end).

%% What the subscriber P has received, oldest first.
received(P) ->
    cpg_node_test_util:recorded_pid(P).
