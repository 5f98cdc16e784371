#!/usr/bin/env bash
# Silent netsplits between real hosts: BEAM nodes and `cpg-node run` nodes,
# each in its own network namespace on one bridge, and cuts that drop
# packets without a word (no RST, no FIN: the peer's neighbour entry is
# pointed at a MAC no host has), as a switch that fails or a firewall that
# drops; the soak can also cut by resets, ICMP unreachable or heavy loss
# (CUTS). After each cut heals, every node's view of one group must equal
# the union of every node's own members.
#
#   sudo bash scripts/netsplit.sh            # root: ip netns, veth, bridge
#
# Hosts (10.213.77.0/24, or NETSPLIT_NET.0/24 for two runs at once; the
# root namespace, where the checks run, is .254):
#   h1 b1  BEAM node, cpg at NODE_TYPE, two members of "svc"
#   h2 b2  BEAM node likewise, connected to b1
#   h3 r   cpg-node run --connect b1 --join svc --join svc (finds b2 itself)
#   h4 r2  with R2=1: cpg-node run --connect b2 --join svc
#
# Scenarios (ONLY="S1 S4" runs some; ROUNDS repeats them):
#   S1  r cut from every host for 12 s (past net_ticktime)
#   S2  r cut from b1 only (b2 reachable)          S3  r cut for 2 s only
#   S3b b2 cut for 2 s (its BEAM peer drops it too)
#   S4  r -> b1 dropped, one way                   S5  b1 -> r, one way
#   S6  b1 cut from every host (r keeps b2)        S6b b2 likewise
#   S7  r-b1 flapping
#   S8  r cut for 75 s (past forget_after)
#   S9  r-r2 cut (R2=1)                            S10 r2 cut (R2=1)
#   S11 r cut for 12 s while b1 and b2 each join a member and lose one
#   S12 b2 killed and restarted at once while its host is cut for 1 s
# SOAK=N then runs N random cuts (ONLY=none: those alone), from SEED
# (printed; the same SEED replays the same cuts: a script from before
# flapping cuts had a generator of their own replays a SEED only up to its
# first flapping cut): a host isolated, a pair
# cut both ways or one way, a pair flapping, two pairs cut at once, or a
# host isolated whose node is killed and started again halfway, for 1-15
# s, with b1 and b2 joining and losing members during half of them.
# CUTS (default "drop"): the ways of cutting each soak cut draws from,
# e.g. CUTS="drop reset unreach lossy" (see HOW below; the scenarios drop).
# After each heal the Rust nodes' views are checked (timed from the heal
# for a cut longer than 1.5 tick times) and again before the BEAM nodes
# meet again, then every view. WRITES (default 1): how many members b1 and
# b2 each join, and how many older ones they lose, at each write (S11 and
# the soak).
# BEAM nodes never reconnect to each other on their own: after S3b, S6, S6b
# r's view is checked (it redials both), then the script pings b2 from
# b1, as an operator would, and checks every view.
#
# Genuine cpg when CPG_EBIN is set (its ebin folders and those of trie and
# quickrand, ':'-separated), else the project's model scope
# (erl_test/cpg_model_scope.erl). NODE_TYPE all (default) or visible;
# TT, the net_ticktime of every node (default 4 s); BIN, the cpg-node
# binary (default: cargo build --release). Logs go to a temporary folder
# that is printed, and kept. Exits 1 if any check diverged.
set -uo pipefail
cd "$(dirname "$0")/.."
NT="${NODE_TYPE:-all}"
TT="${TT:-4}"
ROUNDS="${ROUNDS:-1}"
ONLY="${ONLY:-}"
SOAK="${SOAK:-0}"
WRITES="${WRITES:-1}"
SEED="${SEED:-$((RANDOM * 32768 + RANDOM))}"
read -r -a CUTS <<< "${CUTS:-drop}"
R2="${R2:-}"
if [ "$(id -u)" != 0 ]; then
  echo "netsplit.sh: needs root (network namespaces)" >&2
  exit 2
fi
ID=$$
if ! ip netns add "cpgprobe$ID" 2>/dev/null; then
  echo "netsplit.sh: network namespaces are not available here" >&2
  exit 2
fi
for how in "${CUTS[@]}"; do
  case $how in
    drop) ;;
    reset | unreach | lossy)
      if ! ip netns exec "cpgprobe$ID" iptables -A OUTPUT -d 10.0.0.1 -j DROP 2>/dev/null; then
        ip netns del "cpgprobe$ID"
        echo "netsplit.sh: CUTS=$how needs iptables in a network namespace" >&2
        exit 2
      fi ;;
    *) ip netns del "cpgprobe$ID"; echo "netsplit.sh: no such way to cut: $how" >&2; exit 2 ;;
  esac
done
ip netns del "cpgprobe$ID"
if [ -z "${BIN:-}" ]; then
  BIN=$(cargo build --release --bin cpg-node --message-format=json-render-diagnostics \
    | grep '"kind":\["bin"\]' \
    | sed -n 's/.*"executable":"\([^"]*cpg-node\)".*/\1/p' | tail -n 1)
fi
[ -x "$BIN" ] || { echo "netsplit.sh: no cpg-node binary" >&2; exit 2; }
LOGS=$(mktemp -d)
echo "logs in $LOGS; binary $BIN; node_type $NT; net_ticktime $TT"

# Every EPMD of the run (one per namespace, one for the checks) on one
# private port: nothing of the host's own EPMD is touched.
export ERL_EPMD_PORT=$((20000 + RANDOM % 10000))
# (A helper node that fails writes no erl_crash.dump into the repository.)
export ERL_CRASH_DUMP_SECONDS=0
NET="${NETSPLIT_NET:-10.213.77}"
BR="cpgbr$ID"
HOSTS=3
[ -n "$R2" ] && HOSTS=4
ns() { echo "cpg${ID}h$1"; }
net_up() {
  ip link add "$BR" type bridge && ip addr add "$NET.254/24" dev "$BR" && ip link set "$BR" up || return 1
  for i in $(seq 1 $HOSTS); do
    ip netns add "$(ns "$i")" || return 1
    ip link add "cpgv${ID}h$i" type veth peer name eth0 netns "$(ns "$i")" || return 1
    ip link set "cpgv${ID}h$i" master "$BR"
    ip link set "cpgv${ID}h$i" up
    ip -n "$(ns "$i")" addr add "$NET.$i/24" dev eth0
    ip -n "$(ns "$i")" link set eth0 up
    ip -n "$(ns "$i")" link set lo up
  done
}
cleanup() {
  for i in $(seq 1 $HOSTS); do
    p=$(ip netns pids "$(ns "$i")" 2>/dev/null)
    [ -n "$p" ] && kill $p 2>/dev/null
  done
  sleep 1
  for i in $(seq 1 $HOSTS); do
    p=$(ip netns pids "$(ns "$i")" 2>/dev/null)
    [ -n "$p" ] && kill -9 $p 2>/dev/null
    ip netns del "$(ns "$i")" 2>/dev/null
    ip link del "cpgv${ID}h$i" 2>/dev/null
  done
  ip link del "$BR" 2>/dev/null
  [ -n "${EPMD_PID:-}" ] && kill "$EPMD_PID" 2>/dev/null
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
  true
}
trap cleanup EXIT
net_up || { echo "netsplit.sh: could not set up the hosts" >&2; exit 2; }
# How a cut is made (HOW; the soak draws it from CUTS for each cut):
#   drop     the sender's neighbour entry for the peer points at a MAC no
#            host has: every frame is lost, without a word;
#   reset    a firewall on the sender refuses TCP to the peer with a reset:
#            the sender's own connection ends at its next send, and a dial
#            is refused at once;
#   unreach  it refuses every packet with ICMP host unreachable: a dial
#            fails at once, an open connection retransmits in silence (TCP
#            takes it as a soft error);
#   lossy    it drops LOSS (default 0.3) of the packets at random: the link
#            is slow and lossy rather than cut.
# The last three need iptables in the hosts' namespaces.
HOW=drop
LOSS="${LOSS:-0.3}"
# cutter A B add|del: HOW's rule on host A for packets to host B.
cutter() {
  local -a rule
  case $HOW in
    drop)
      if [ "$3" = add ]; then
        ip -n "$(ns "$1")" neigh replace "$NET.$2" lladdr "02:de:ad:00:00:0$2" dev eth0 nud permanent
      else
        ip -n "$(ns "$1")" neigh del "$NET.$2" dev eth0 2>/dev/null
      fi ;;
    reset) rule=(-d "$NET.$2" -p tcp -j REJECT --reject-with tcp-reset) ;;
    unreach) rule=(-d "$NET.$2" -j REJECT --reject-with icmp-host-unreachable) ;;
    lossy) rule=(-d "$NET.$2" -m statistic --mode random --probability "$LOSS" -j DROP) ;;
  esac
  [ "$HOW" = drop ] && return 0
  # (One rule per pair: a cut made twice, as two pairs drawn alike, is
  # healed by one delete.)
  if [ "$3" = add ]; then
    ip netns exec "$(ns "$1")" iptables -C OUTPUT "${rule[@]}" 2>/dev/null \
      || ip netns exec "$(ns "$1")" iptables -A OUTPUT "${rule[@]}"
  else
    ip netns exec "$(ns "$1")" iptables -D OUTPUT "${rule[@]}" 2>/dev/null
  fi
  true
}
# split A B [oneway]: packets from host A to host B (and back, unless
# oneway) are cut, the HOW way; heal A B ends it both ways (the same HOW).
split() {
  cutter "$1" "$2" add
  [ "${3:-}" = oneway ] || cutter "$2" "$1" add
}
heal() {
  cutter "$1" "$2" del
  cutter "$2" "$1" del
}
isolate() { for j in $(seq 1 $HOSTS); do [ "$j" = "$1" ] || split "$1" "$j"; done; }
rejoin() { for j in $(seq 1 $HOSTS); do [ "$j" = "$1" ] || heal "$1" "$j"; done; }

COOKIE="c$RANDOM$RANDOM$RANDOM"
if [ -n "${CPG_EBIN:-}" ]; then
  MOD=cpg
  PA=$(echo "$CPG_EBIN" | tr ':' ' ')
  SCOPE="application:load(cpg), application:set_env(cpg, node_type, $NT), {ok, _} = application:ensure_all_started(cpg)"
else
  MOD=cpg_model_scope
  WORK=$(mktemp -d)
  erlc -o "$WORK" erl_test/*.erl || exit 2
  PA=$WORK
  SCOPE="{ok, _} = cpg_model_scope:start(cpg_default_scope, $NT)"
  echo "CPG_EBIN is not set: the BEAM nodes run the model scope (erl_test/cpg_model_scope.erl)"
fi
B1="b1@$NET.1"; B2="b2@$NET.2"; R="r@$NET.3"; R2N="r2@$NET.4"
declare -A PID
startb() { # startb I: bI on host I, two members of "svc"; b2 pings b1
  local ping="ok"
  # (Not matched: b2 restarted during a cut does not reach b1 yet.)
  [ "$1" = 2 ] && ping="net_adm:ping('$B1')"
  # shellcheck disable=SC2086
  ip netns exec "$(ns "$1")" erl -name "b$1@$NET.$1" -setcookie "$COOKIE" -kernel net_ticktime "$TT" \
    -noshell -pa $PA -eval "$SCOPE, \
      [spawn(fun() -> ok = $MOD:join(cpg_default_scope, \"svc\", self()), receive stop -> ok end end) || _ <- [1, 2]], \
      $ping" >> "$LOGS/b$1.log" 2>&1 &
  PID[b$1]=$!
}
startr() { # startr NAME HOST SEED JOINS...
  local name=$1 host=$2 seed=$3
  shift 3
  ip netns exec "$(ns "$host")" env RUST_LOG="${RUST_LOG:-info}" "$BIN" --name "$name@$NET.$host" \
    --cookie "$COOKIE" --net-ticktime "$TT" run --connect "$seed" "$@" >> "$LOGS/$name.log" 2>&1 &
  PID[$name]=$!
}
# starth H: the node of host H (b1, b2, r, r2), as at the start and at a
# restart.
starth() {
  case $1 in
    1 | 2) startb "$1" ;;
    3) startr r 3 "$B1" --join svc --join svc ;;
    4) startr r2 4 "$B2" --join svc ;;
  esac
}
epmd -port "$ERL_EPMD_PORT" > /dev/null 2>&1 &
EPMD_PID=$!
starth 1
sleep 2
starth 2
sleep 1
starth 3
ALLR=$R
# (the Rust nodes other than r: reachable from the viewers when r is cut)
O=""
ONONE=none
if [ -n "$R2" ]; then
  starth 4
  ALLR="$R,$R2N"
  O=",$R2N"
  ONONE=$R2N
fi
ALLB="$B1,$B2"
FAILED=0
# check WHAT RUST BEAM [TIMEOUT [VIEWERS]]
check() {
  local out
  out=$(ERL_FLAGS="-setcookie $COOKIE" escript scripts/netsplit_check.escript "chk$RANDOM@$NET.254" \
    "$MOD" "${4:-60}" svc "$2" "$3" "${5:-all}" 2>&1)
  case "$out" in converged*) ;; *) FAILED=$((FAILED + 1)) ;; esac
  echo "  $1: $(echo "$out" | tr -s ' \n' ' ')"
}
settle() { check healed "$ALLR" "$ALLB" 90; sleep $((2 * TT)); check "settled" "$ALLR" "$ALLB"; }
remesh() { # the BEAM nodes do not reconnect to each other by themselves
  ERL_FLAGS="-setcookie $COOKIE" erl -noshell -hidden -name "png$RANDOM@$NET.254" -eval "
    L = fun L(0) -> timeout; L(N) -> case rpc:call('$B1', net_adm, ping, ['$B2']) of
      pong -> pong; _ -> timer:sleep(200), L(N - 1) end end,
    io:format(\"  b1-b2 ~p~n\", [L(50)]), halt()."
}
writes() { # on b1 and b2: WRITES members more, as many older ones gone (killed)
  ERL_FLAGS="-setcookie $COOKIE" erl -noshell -hidden -name "wr$RANDOM@$NET.254" -eval "
    W = fun(B) -> try
      pong = net_adm:ping(B),
      Ps = [spawn(B, timer, sleep, [infinity]) || _ <- lists:seq(1, $WRITES)],
      [ok = rpc:call(B, $MOD, join, [cpg_default_scope, \"svc\", P]) || P <- Ps],
      {ok, _, L} = rpc:call(B, $MOD, get_local_members, [cpg_default_scope, \"svc\"]),
      [exit(O, kill) || O <- lists:sublist(L -- Ps, $WRITES)], [B]
      catch _:E -> io:format(\"  not all written on ~s (restarting?): ~0p~n\", [B, E]), [] end end,
    io:format(\"  wrote on ~0p~n\", [W('$B1') ++ W('$B2')]), halt()."
}
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
# restart H: the node of host H killed (SIGKILL: no goodbye) and started
# again, as it was at the start (a new incarnation, new member pids).
restart() {
  local old
  case $1 in 1) old=b1 ;; 2) old=b2 ;; 3) old=r ;; 4) old=r2 ;; esac
  kill -9 "${PID[$old]}" 2>/dev/null; wait "${PID[$old]}" 2>/dev/null
  starth "$1"
}
check start "$ALLR" "$ALLB"
for _ in $(seq 1 "$ROUNDS"); do
  if want S1; then
    echo "S1 r cut from every host for 12 s"
    isolate 3; sleep 12
    check "during, BEAM side" "$ONONE" "$ALLB" 10
    check "during, r" "$R" none 10
    rejoin 3; settle
  fi
  if want S2; then
    echo "S2 r cut from b1 only for 12 s"
    split 3 1; sleep 12
    check "during, r" "$R$O" "$B2" 10 "$R"
    check "during, b1" "$ONONE" "$ALLB" 10 "$B1"
    heal 3 1; settle
  fi
  if want S3; then
    echo "S3 r cut from every host for 2 s"
    isolate 3; sleep 2; rejoin 3; settle
  fi
  if want S3b; then
    echo "S3b b2 cut from every host for 2 s"
    isolate 2; sleep 2; rejoin 2; sleep $((2 * TT))
    check "r, before b1 and b2 meet again" "$ALLR" "$ALLB" 30 "$R"
    remesh; settle
  fi
  if want S4; then
    echo "S4 r -> b1 dropped for 12 s (one way)"
    split 3 1 oneway; sleep 12
    check "during, r" "$R$O" "$B2" 10 "$R"
    heal 3 1; settle
  fi
  if want S5; then
    echo "S5 b1 -> r dropped for 12 s (one way)"
    split 1 3 oneway; sleep 12
    check "during, r" "$R$O" "$B2" 10 "$R"
    heal 1 3; settle
  fi
  if want S6; then
    echo "S6 b1 cut from every host for 12 s"
    isolate 1; sleep 12
    check "during, r and b2" "$ALLR" "$B2" 10
    rejoin 1
    check "r, before b1 and b2 meet again" "$ALLR" "$ALLB" 30 "$R"
    remesh; settle
  fi
  if want S6b; then
    echo "S6b b2 cut from every host for 12 s"
    isolate 2; sleep 12
    check "during, r and b1" "$ALLR" "$B1" 10
    rejoin 2; sleep $((2 * TT))
    check "r, before b1 and b2 meet again" "$ALLR" "$ALLB" 30 "$R"
    remesh; settle
  fi
  if want S7; then
    echo "S7 r-b1 flapping: 6 x (5 s cut, 1 s up)"
    for _ in 1 2 3 4 5 6; do split 3 1; sleep 5; heal 3 1; sleep 1; done
    settle
  fi
  if want S8; then
    echo "S8 r cut from every host for 75 s"
    isolate 3; sleep 75; rejoin 3; settle
  fi
  if want S11; then
    echo "S11 r cut from every host for 12 s while b1 and b2 join and leave"
    isolate 3; sleep 2; writes; sleep 10
    check "during, BEAM side" "$ONONE" "$ALLB" 10
    rejoin 3; settle
  fi
  if want S12; then
    echo "S12 b2 killed and restarted at once while its host is cut for 1 s"
    isolate 2; restart 2; sleep 1; rejoin 2; sleep $((2 * TT))
    check "r, before b1 and b2 meet again" "$ALLR" "$ALLB" 30 "$R"
    remesh; settle
  fi
  if [ -n "$R2" ] && want S9; then
    echo "S9 r-r2 cut for 12 s"
    split 3 4; sleep 12
    check "during, BEAM side" "$ALLR" "$ALLB" 10 "$ALLB"
    heal 3 4; settle
  fi
  if [ -n "$R2" ] && want S10; then
    echo "S10 r2 cut from every host for 12 s"
    isolate 4; sleep 12; rejoin 4; settle
  fi
done
# rnd N: a number in 0..N-1 in RV, from the soak's own generator (an LCG
# seeded by SEED; $RANDOM also names the checks' nodes).
RS=$SEED
rnd() { RS=$(((RS * 1103515245 + 12345) % 2147483648)); RV=$(((RS / 65536) % $1)); }
# pair: two distinct hosts, in HA and HB.
pair() { rnd "$HOSTS"; HA=$((RV + 1)); rnd $((HOSTS - 1)); HB=$((RV + 1)); [ "$HB" -ge "$HA" ] && HB=$((HB + 1)); true; }
[ "$SOAK" -gt 0 ] && echo "soak of $SOAK random cuts, SEED=$SEED"
for k in $(seq 1 "$SOAK"); do
  rnd 15; d=$((RV + 1))
  rnd 2; w=$RV
  rnd 6
  case $RV in
    0) rnd "$HOSTS"; h=$((RV + 1)); what="host $h isolated"
       cut() { isolate "$h"; sleep "$d"; }; mend() { rejoin "$h"; } ;;
    1) pair; what="$HA-$HB cut"; cut() { split "$HA" "$HB"; sleep "$d"; }; mend() { heal "$HA" "$HB"; } ;;
    2) pair; what="$HA -> $HB dropped (one way)"
       cut() { split "$HA" "$HB" oneway; sleep "$d"; }; mend() { heal "$HA" "$HB"; } ;;
    3) pair; what="$HA-$HB flapping (1-4 s cut, up to 1 s up)"
       # (How many flaps fit in d depends on timing: they draw from a
       # generator of their own, so the cuts after them replay alike.)
       rnd 32768; FS=$RV
       cut() {
         local end=$((SECONDS + d))
         while [ "$SECONDS" -lt "$end" ]; do
           FS=$(((FS * 1103515245 + 12345) % 2147483648))
           split "$HA" "$HB"; sleep $(((FS / 65536) % 4 + 1)); heal "$HA" "$HB"
           FS=$(((FS * 1103515245 + 12345) % 2147483648))
           sleep "0.$(((FS / 65536) % 10))"
         done
       }
       mend() { heal "$HA" "$HB"; } ;;
    4) pair; P1="$HA $HB"; pair; P2="$HA $HB"; what="$P1 and $P2 cut"
       # shellcheck disable=SC2086
       cut() { split $P1; split $P2; sleep "$d"; }
       # shellcheck disable=SC2086
       mend() { heal $P1; heal $P2; } ;;
    5) rnd "$HOSTS"; h=$((RV + 1)); what="host $h isolated, its node killed and restarted halfway"
       cut() { isolate "$h"; sleep $((d / 2)); restart "$h"; sleep $((d - d / 2)); }; mend() { rejoin "$h"; } ;;
  esac
  # (One way of cutting draws nothing: a SEED from before CUTS replays.)
  HOW=${CUTS[0]}
  if [ "${#CUTS[@]}" -gt 1 ]; then rnd "${#CUTS[@]}"; HOW=${CUTS[$RV]}; fi
  [ "$HOW" = drop ] || what="$what ($HOW)"
  [ "$w" = 1 ] && what="$what, with writes"
  echo "K$k: $what, $d s"
  # (The writes come from the checks' host, never cut, halfway through.)
  WP=""
  if [ "$w" = 1 ]; then (sleep $((d / 2)); writes) & WP=$!; fi
  cut
  [ -n "$WP" ] && wait "$WP"
  mend
  # A cut past the tick time has ended every connection across it by now:
  # the time until the Rust views are whole again is the heal's.
  if [ "$d" -gt $((TT + TT / 2)) ]; then
    check "Rust views, from the heal" "$ALLR" "$ALLB" 30 "$ALLR"
  fi
  # The Rust nodes redial every node; the BEAM nodes may have lost each
  # other (net_ticktime) and wait for someone to connect them.
  sleep $((2 * TT))
  check "Rust views, before b1 and b2 meet again" "$ALLR" "$ALLB" 30 "$ALLR"
  remesh; settle
done
for n in "${!PID[@]}"; do
  kill -0 "${PID[$n]}" 2>/dev/null || { echo "$n is no longer running"; FAILED=$((FAILED + 1)); }
done
echo "diverged checks: $FAILED (logs in $LOGS)"
[ "$FAILED" = 0 ]
