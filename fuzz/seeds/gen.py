#!/usr/bin/env python3
"""Writes the seed inputs of the byte-level fuzz targets into
fuzz/seeds/TARGET/ (valid messages of each kind, which the fuzzer then
mutates; without them ten minutes mostly rediscover the formats).
scripts/fuzz.sh passes fuzz/seeds/TARGET to cargo fuzz after the corpus.
    python3 fuzz/seeds/gen.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


# External term format, bodies without the 131 version byte.
def atom(s):
    b = s.encode()
    return bytes([119, len(b)]) + b


def tup(*es):
    return bytes([104, len(es)]) + b"".join(es)


def large_tup(*es):
    return bytes([105]) + struct.pack(">I", len(es)) + b"".join(es)


def string(s):
    b = s.encode("latin-1")
    return bytes([107]) + struct.pack(">H", len(b)) + b


def lst(*es, tail=b"\x6a"):
    return bytes([108]) + struct.pack(">I", len(es)) + b"".join(es) + tail


NIL = b"\x6a"


def integer(i):
    if 0 <= i < 256:
        return bytes([97, i])
    return bytes([98]) + struct.pack(">i", i)


def pid(node, id_, serial=0, creation=1):
    return bytes([88]) + atom(node) + struct.pack(">III", id_, serial, creation)


def ref(node, ids=(1, 2, 3), creation=1):
    return bytes([90]) + struct.pack(">H", len(ids)) + atom(node) + struct.pack(
        ">I", creation) + b"".join(struct.pack(">I", i) for i in ids)


def port(node, id_, creation=1):
    return bytes([89]) + atom(node) + struct.pack(">II", id_, creation)


def v4_port(node, id_, creation=1):
    return bytes([120]) + atom(node) + struct.pack(">QI", id_, creation)


def binary(b):
    return bytes([109]) + struct.pack(">I", len(b)) + b


def bit_binary(b, bits):
    return bytes([77]) + struct.pack(">I", len(b)) + bytes([bits]) + b


def float_(f):
    return bytes([70]) + struct.pack(">d", f)


def small_big(n):
    sign = 1 if n < 0 else 0
    n = abs(n)
    digits = []
    while n:
        digits.append(n & 255)
        n >>= 8
    return bytes([110, len(digits), sign]) + bytes(digits)


def large_big(n):
    b = small_big(n)
    return bytes([111]) + struct.pack(">I", b[1]) + b[2:]


def map_(*kvs):
    return bytes([116]) + struct.pack(">I", len(kvs)) + b"".join(k + v for k, v in kvs)


def export(m, f, a):
    return bytes([113]) + atom(m) + atom(f) + integer(a)


def old_atom(s):
    b = s.encode("latin-1")
    return bytes([100]) + struct.pack(">H", len(b)) + b


def utf8_atom(s):
    b = s.encode()
    return bytes([118]) + struct.pack(">H", len(b)) + b


def term(body):
    return b"\x83" + body


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- cpg_wire: messages of 2-byte length + term, to scope me@host, with
# a@host up and listened.
A1, A2 = pid("a@host", 1), pid("a@host", 2)
ME1 = pid("me@host", 1)
C1 = pid("c@host", 1)


def cast(req):
    return term(tup(atom("$gen_cast"), req))


cpg = {
    "join": cast(tup(atom("join"), string("a/b"), A1)),
    "join-pattern": cast(tup(atom("join"), string("a/*"), A2)),
    "join-charlist": cast(tup(atom("join"), lst(integer(0x7ec4), integer(47), integer(120)), A1)),
    "join-counts": cast(tup(atom("join_counts"), lst(tup(string("a/b"), integer(2)), tup(string("a/*"), integer(1))), A1)),
    "leave": cast(tup(atom("leave"), string("a/b"), A1)),
    "leave-counts": cast(tup(atom("leave_counts"), lst(tup(string("a/b"), integer(1))), A1)),
    "leave-all": cast(tup(atom("leave"), A1)),
    "exchange": cast(tup(atom("exchange"), atom("a@host"), lst(
        tup(string("c"), lst(A1, A2, A1)), tup(string("a/b"), lst(ME1, C1, A2))))),
    "new": term(tup(atom("new"), atom("b@host"))),
}


def framed(*msgs):
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


for k, v in cpg.items():
    write("cpg_wire", k, framed(v))
write("cpg_wire", "sequence", framed(cpg["join"], cpg["join-counts"], cpg["exchange"],
                                     cpg["leave-counts"], cpg["join-pattern"], cpg["leave"],
                                     cpg["new"], cpg["leave-all"]))

# --- term: one term of each kind.
terms = {
    "atoms": tup(atom("a"), old_atom("b"), utf8_atom("\u00e9t\u00e9"), atom("")),
    "numbers": lst(integer(1), integer(-5), integer(70000), small_big(2**70), small_big(-2**64),
                   large_big(2**300), float_(1.5), float_(-0.0)),
    "ids": tup(pid("a@h", 1, 2, 3), ref("a@h"), port("a@h", 7), v4_port("a@h", 2**40)),
    "binaries": tup(binary(b"abc"), bit_binary(b"\xe0", 3), binary(b""), string("xyz")),
    "containers": tup(map_((atom("k"), lst(integer(1), integer(2), tail=integer(3))),
                           (string("s"), map_())), large_tup(NIL, NIL), NIL),
    "fun": export("lists", "map", 2),
    "nested": tup(*([tup(lst(tup(NIL)))] * 3)),
}
UNDEF = atom("undefined")


def amap(**kv):
    return map_(*[(atom(k), v) for k, v in kv.items()])


terms["status"] = amap(
    node=atom("rust@host"), creation=integer(70000), version=binary(b"0.1.0"),
    uptime_ms=integer(5123), processes=integer(4),
    peers=lst(amap(node=atom("app@host"), creation=small_big(2**31), direction=atom("in"),
                   connected_ms=integer(5000), last_heard_ms=integer(120), msgs_in=integer(12),
                   msgs_out=integer(9), bytes_in=integer(2048), bytes_out=integer(1024),
                   queued=integer(0))),
    scopes=lst(amap(scope=atom("cpg_default_scope"), groups=integer(2), members=integer(3),
                    local_members=integer(1), pids=integer(2))),
    cluster=lst(amap(node=atom("app@host"), origin=atom("seed"), connected=atom("true"),
                     failures=integer(0), next_attempt_ms=UNDEF,
                     last_error=binary(b"refused"))))
terms["status-minimal"] = amap(
    node=atom("r@h"), creation=integer(1), version=binary(b""), uptime_ms=integer(0),
    processes=integer(0), peers=NIL, scopes=NIL, cluster=UNDEF)
for k, v in terms.items():
    write("term", k, term(v))

# --- control: packets (4-byte length) after the handshake.
FROM, TO = pid("a@host", 1), pid("me@host", 2)
REF = ref("a@host")
controls = {
    "reg-send": (tup(integer(6), FROM, atom(""), atom("cpg_default_scope")),
                 tup(atom("$gen_cast"), tup(atom("join"), string("g"), FROM))),
    "send-sender": (tup(integer(22), FROM, TO), atom("hello")),
    "monitor": (tup(integer(19), FROM, atom("cpg_default_scope"), REF), None),
    "demonitor": (tup(integer(20), FROM, TO, REF), None),
    "monitor-exit": (tup(integer(21), TO, FROM, REF, atom("noproc")), None),
    "link": (tup(integer(1), FROM, TO), None),
    "exit": (tup(integer(3), FROM, TO, atom("killed")), None),
    "exit2": (tup(integer(8), FROM, TO, atom("normal")), None),
    "payload-exit": (tup(integer(24), FROM, TO), atom("killed")),
    "payload-monitor-exit": (tup(integer(27), TO, FROM, REF), atom("noconnection")),
    "alias-send": (tup(integer(33), FROM, REF), tup(REF, atom("ok"))),
    "unlink-id": (tup(integer(35), small_big(2**40), FROM, TO), None),
}


def packet(body):
    return struct.pack(">I", len(body)) + body


def pass_through(ctl, payload):
    b = b"\x70" + term(ctl)
    if payload is not None:
        b += term(payload)
    return packet(b)


def dist_header(ctl, payload):
    return packet(b"\x83\x44\x00" + ctl + (payload or b""))


def fragments(ctl, payload, seq, size):
    data = ctl + (payload or b"")
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    out = b""
    n = len(chunks)
    for i, c in enumerate(chunks):
        hdr = bytes([131, 69 if i == 0 else 70]) + struct.pack(">QQ", seq, n - i)
        if i == 0:
            hdr += b"\x00"
        out += packet(hdr + c)
    return out


for k, (c, p) in controls.items():
    write("control", k, pass_through(c, p))
    write("control", k + "-header", dist_header(c, p))
write("control", "fragments", fragments(*controls["reg-send"], seq=5, size=16))
write("control", "mixed", b"\0\0\0\0" + pass_through(*controls["link"])
      + fragments(*controls["alias-send"], seq=9, size=20) + dist_header(*controls["exit"]))

# --- handshake: a mode byte (bit 0: the peer knows the cookie), then
# messages with 2-byte lengths, fed to both sides.
FLAGS = 0x0107_0F94 | (1 << 36)  # MANDATORY_25 and SPAWN


def name_msg(name, creation=3):
    n = name.encode()
    return b"N" + struct.pack(">QIH", FLAGS, creation, len(n)) + n


def challenge_msg(name, challenge=1234, creation=3):
    n = name.encode()
    return b"N" + struct.pack(">QIIH", FLAGS, challenge, creation, len(n)) + n


acceptor_side = [name_msg("peer@host"), b"r" + struct.pack(">I", 99) + bytes(16)]
initiator_side = [b"sok", challenge_msg("peer@host"), b"a" + bytes(16)]
write("handshake", "acceptor", b"\x01" + framed(*acceptor_side))
write("handshake", "initiator", b"\x01" + framed(*initiator_side))
write("handshake", "initiator-alive", b"\x01" + framed(b"salive", *initiator_side[1:]))
write("handshake", "refused", b"\x03" + framed(*acceptor_side))


# --- epmd: answers the client reads; epmd_server: a read-size byte, then
# requests as a client sends them.
def entry(name, port=4370, node_type=72):
    n = name.encode()
    return struct.pack(">HBBHHH", port, node_type, 0, 6, 6, len(n)) + n + struct.pack(">H", 0)


write("epmd", "alive2-x", bytes([118, 0]) + struct.pack(">I", 77))
write("epmd", "alive2-old", bytes([121, 0]) + struct.pack(">H", 7))
write("epmd", "port2", bytes([119, 0]) + entry("peer"))
write("epmd", "port2-none", bytes([119, 1]))
write("epmd", "names", struct.pack(">I", 4369) + b"name a at port 4370\nname b at port 4371\n")


def request(body):
    return struct.pack(">H", len(body)) + body


write("epmd_server", "alive2", b"\x07" + request(b"\x78" + entry("me")))
write("epmd_server", "port-please2", b"\xff" + request(b"\x7aother"))
write("epmd_server", "names", b"\x00" + request(b"\x6e"))
