%% A stand-in for a BEAM cpg scope, written for the tests (no genuine cpg
%% code): it is registered under the scope name on a real erl node, records
%% everything the Rust scope sends it, and sends the Rust scope every
%% message of the cpg protocol the way a genuine scope does (casts wrapped
%% by gen_server:cast, {new, Node} as a plain message).
-module(cpg_protocol_driver).
-export([start/1, received/1, member/0, cast/3, new/2, send_raw/3]).

%% Registers the recorder as Scope on this node.
start(Scope) -> cpg_node_test_util:spawn_recorder(Scope).

%% Everything the Rust scope sent to our Scope, oldest first.
received(Scope) -> cpg_node_test_util:recorded(Scope).

%% A fresh member process (exits on {exit, Reason}).
member() -> cpg_node_test_util:spawn_idle().

%% Casts Request to the scope Scope on RustNode, as a genuine scope does.
cast(Scope, RustNode, Request) -> gen_server:cast({Scope, RustNode}, Request).

%% {new, node()} to the Rust scope: it must answer with an exchange.
new(Scope, RustNode) -> {Scope, RustNode} ! {new, node()}, ok.

%% Anything at all, for the hostile-input checks.
send_raw(Scope, RustNode, Msg) -> {Scope, RustNode} ! Msg, ok.
