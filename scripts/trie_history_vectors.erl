%% Writes test vectors for the cpg-node trie: random histories of
%% trie:store/3 and trie:erase/2 on genuine okeuday/trie, each followed by
%% trie:find_match2/2 of some names, one JSON object a line:
%%   {"ops":[["+","a*"],["-","a*"],...],"queries":[["name","key"|null],...]}
%% A query answers null where find_match2 finds nothing or raises.
%% tests/data/trie_history.jsonl is main(20261206, 2000, ...). Run it
%% with genuine trie on the code path (CPG_EBIN), e.g.
%%   erl -noshell -pa $(echo $CPG_EBIN | tr : ' ') -pa DIR \
%%       -eval 'trie_history_vectors:main(Seed, Count, "out.jsonl"), halt().'
-module(trie_history_vectors).
-export([main/3]).

main(Seed, Count, Out) ->
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 5}),
    {ok, F} = file:open(Out, [write, {encoding, utf8}]),
    lists:foreach(fun(_) -> io:put_chars(F, [case_line(), $\n]) end,
                  lists:seq(1, Count)),
    ok = file:close(F).

alphabet() -> "ab/*?".

rand_string(Alphabet, Min, Max) ->
    N = Min + rand:uniform(Max - Min + 1) - 1,
    [lists:nth(rand:uniform(length(Alphabet)), Alphabet) || _ <- lists:seq(1, N)].

case_line() ->
    Pool = lists:usort([rand_string(alphabet(), 1, 6) || _ <- lists:seq(1, 2 + rand:uniform(5))]),
    NOps = 3 + rand:uniform(14),
    {Ops, Trie, _} = lists:foldl(fun(_, {Acc, T, Live}) ->
        K = lists:nth(rand:uniform(length(Pool)), Pool),
        case lists:member(K, Live) of
            true ->
                {[{"-", K} | Acc], trie:erase(K, T), Live -- [K]};
            false ->
                {[{"+", K} | Acc], trie:store(K, K, T), [K | Live]}
        end
    end, {[], trie:new(), []}, lists:seq(1, NOps)),
    Names = lists:usort(
        [fill(K) || K <- Pool] ++
        [fill(K) ++ rand_string("ab/", 1, 3) || K <- Pool] ++
        [rand_string("ab/", 1, 8) || _ <- lists:seq(1, 8)] ++
        % names holding wildcards: mostly badarg (null), but a `*` or `?`
        % scan can pass over them and find a key
        Pool ++ [rand_string(alphabet(), 1, 8) || _ <- lists:seq(1, 6)]),
    Queries = [{N, answer(N, Trie)} || N <- Names],
    ["{\"ops\":[", join([["[\"", Op, "\",", str(K), "]"] || {Op, K} <- lists:reverse(Ops)]),
     "],\"queries\":[",
     join([["[", str(N), ",", case A of null -> "null"; _ -> str(A) end, "]"]
           || {N, A} <- Queries]),
     "]}"].

fill(K) -> [case C of $* -> $a; $? -> $b; _ -> C end || C <- K].

answer(Name, Trie) ->
    Self = self(),
    Pid = spawn(fun() ->
        Self ! {self(), catch trie:find_match2(Name, Trie)}
    end),
    receive
        {Pid, {ok, Key, _}} -> Key;
        {Pid, _} -> null
    after 2000 -> exit(Pid, kill), null
    end.

str(S) -> [$", [case C of $" -> "\\\""; $\\ -> "\\\\"; _ -> C end || C <- S], $"].

join([]) -> [];
join([H | T]) -> [H | [[",", X] || X <- T]].
