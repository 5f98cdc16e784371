//! Golden bytes: frames a real OTP 25 node (erts 13.1.5) wrote to a
//! connection with cpg-node, decoded by our link and re-encoded
//! byte-for-byte by our encoder.
//!
//! Captured with `examples/golden_capture.rs`: an `erl` node `gce@vm`
//! under `strace -f -e trace=write,writev -xx`, connected to our node
//! `gcr@vm` (FRAGMENTS negotiated, so the BEAM writes the `131, 68`
//! distribution header without atom cache refs), ran
//!
//! ```erlang
//! {golden, 'gcr@vm'} ! {self(), hello},               % REG_SEND
//! receive {pid, P} -> ok end,
//! P ! {small, 1},                                      % SEND_SENDER
//! P ! {[1,2,3], "abc", 1.5, -1, 123456789012345678901234567890,
//!      <<1,2,3>>, #{a => 1}},                          % SEND_SENDER
//! M = erlang:monitor(process, P), erlang:demonitor(M), % MONITOR_P, DEMONITOR_P
//! P ! {big, binary:copy(<<7>>, 200000)},               % 4 fragments
//! timer:sleep(2500)                                    % a tick (net_ticktime 4)
//! ```
//!
//! Each hex string below is one `writev` to the connection's socket,
//! length prefix included. The fragmented message is kept as its four
//! fragment headers and the start of its data: the rest of the data was
//! 199,994 bytes of 7 (checked when captured), rebuilt here.

use super::codec;
use super::control::encode_message;
use super::link::{Event, Link, LinkConfig};
use crate::term::{self, Limits, Term};
use erl_dist::message::Message;
use std::time::{Duration, Instant};

const REG_SEND: &str = "000000448344006804610658770667636540766d00000009000000007274a49f77007706676f6c64656e680258770667636540766d00000009000000007274a49f770568656c6c6f";
const SEND_SENDER_SMALL: &str = "0000003c8344006803611658770667636540766d00000009000000007274a49f58770667637240766d00000065000000007274a49e68027705736d616c6c6101";
const SEND_SENDER_TERMS: &str = "0000006f8344006803611658770667636540766d00000009000000007274a49f58770667637240766d00000065000000007274a49e68076b00030102036b0003616263463ff800000000000062ffffffff6e0d00d20a3f4eeee073c3f60fe98e016d0000000301020374000000017701616101";
const MONITOR_P: &str = "0000004c8344006804611358770667636540766d00000009000000007274a49f58770667637240766d00000065000000007274a49e5a0003770667636540766d7274a49f00027110ed74000180aaa5bb";
const DEMONITOR_P: &str = "0000004c8344006804611458770667636540766d00000009000000007274a49f58770667637240766d00000065000000007274a49e5a0003770667636540766d7274a49f00027110ed74000180aaa5bb";
const TICK: &str = "00000000";
/// The headers of the four fragments of `P ! {big, <<7 x 200000>>}`.
const FRAGMENT_HEADERS: [&str; 4] = [
    "0001001383450000004800000093000000000000000400",
    "00010012834600000048000000930000000000000003",
    "00010012834600000048000000930000000000000002",
    "00000d8c834600000048000000930000000000000001",
];
/// The data before the binary's bytes: control tuple, `{big, <<` and the
/// binary's length (200,000).
const FRAGMENTED_DATA_START: &str = "6803611658770667636540766d00000009000000007274a49f58770667637240766d00000065000000007274a49e680277036269676d00030d40";
/// BEAM's fragment size (data bytes per fragment), as our default.
const BEAM_FRAGMENT: usize = 64 * 1024;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn link() -> Link {
    let cfg = LinkConfig {
        ticktime: Duration::from_secs(60),
        max_frame: 1 << 24,
        fragment_size: BEAM_FRAGMENT,
        fragments: true,
        atom_cache: true,
        limits: Limits::default(),
    };
    Link::new(cfg, Instant::now())
}

/// The one message in `bytes`, decoded by a link.
fn decode(bytes: &[u8]) -> Message {
    let mut l = link();
    l.handle_input(bytes, Instant::now()).unwrap();
    let Some(Event::Message(m)) = l.poll_event() else {
        panic!("no message")
    };
    assert!(l.poll_event().is_none());
    m
}

fn show(t: &Term) -> String {
    t.to_string()
}

#[test]
fn beam_frames_decode_and_reencode_byte_for_byte() {
    for (name, frame) in [
        ("REG_SEND", REG_SEND),
        ("SEND_SENDER small", SEND_SENDER_SMALL),
        ("SEND_SENDER terms", SEND_SENDER_TERMS),
        ("MONITOR_P", MONITOR_P),
        ("DEMONITOR_P", DEMONITOR_P),
    ] {
        let bytes = hex(frame);
        let msg = decode(&bytes);
        let mut ours = vec![];
        encode_message(&msg, &mut ours, true).unwrap();
        assert_eq!(ours, bytes, "{name}: {msg:?}");
    }
}

#[test]
fn beam_frames_and_their_mutations_decode_as_before() {
    for frame in [
        REG_SEND,
        SEND_SENDER_SMALL,
        SEND_SENDER_TERMS,
        MONITOR_P,
        DEMONITOR_P,
    ] {
        let bytes = hex(frame);
        assert_eq!(&bytes[4..7], &[131, 68, 0]);
        super::control::tests::check_mutations(&bytes[7..], false);
    }
}

#[test]
fn beam_frames_mean_what_erl_sent() {
    let Message::RegSend(m) = decode(&hex(REG_SEND)) else {
        panic!("not a REG_SEND")
    };
    assert_eq!(
        (m.from_pid.node.name.as_str(), m.to_name.name.as_str()),
        ("gce@vm", "golden")
    );
    assert_eq!(show(&m.message), "{<'gce@vm'.9.0>,'hello'}");
    let Message::SendSender(m) = decode(&hex(SEND_SENDER_TERMS)) else {
        panic!("not a SEND_SENDER")
    };
    assert_eq!(m.to_pid.node.name, "gcr@vm");
    assert_eq!(
        show(&m.message),
        "{[1,2,3],[97,98,99],1.5,-1,123456789012345678901234567890,<<1,2,3>>,#{'a'=>1}}"
    );
    let Message::MonitorP(mon) = decode(&hex(MONITOR_P)) else {
        panic!("not a MONITOR_P")
    };
    let Message::DemonitorP(de) = decode(&hex(DEMONITOR_P)) else {
        panic!("not a DEMONITOR_P")
    };
    assert_eq!(mon.reference, de.reference);
    assert_eq!(mon.reference.id.len(), 3);
    // A tick: nothing decoded, answered (after a quiet spell of ours: an
    // eighth of the link's 60 s tick time).
    let mut l = link();
    let quiet = Instant::now() + Duration::from_secs(8);
    l.handle_input(&hex(TICK), quiet).unwrap();
    assert!(l.poll_event().is_none() && l.wants_transmit());
}

/// The BEAM's four fragments, rebuilt from the headers and the data.
fn beam_fragments() -> Vec<u8> {
    let mut data = hex(FRAGMENTED_DATA_START);
    data.resize(data.len() + 200_000, 7);
    let mut out = vec![];
    for (h, chunk) in FRAGMENT_HEADERS.iter().zip(data.chunks(BEAM_FRAGMENT)) {
        let h = hex(h);
        let len = u32::from_be_bytes(h[..4].try_into().unwrap()) as usize;
        assert_eq!(len, h.len() - 4 + chunk.len(), "a header fits its chunk");
        out.extend_from_slice(&h);
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn beam_fragments_reassemble_and_ours_are_the_same_bytes() {
    let frames = beam_fragments();
    let msg = decode(&frames);
    let Message::SendSender(m) = &msg else {
        panic!("not a SEND_SENDER")
    };
    let [tag, bin] = term::as_tuple(&m.message).unwrap() else {
        panic!("not a pair")
    };
    assert_eq!(term::as_atom(tag), Some("big"));
    assert!(matches!(bin, Term::Binary(b) if b.bytes == vec![7; 200_000]));
    // Our encoder, fragmenting at the BEAM's size with the BEAM's
    // sequence id, writes the very same frames.
    let mut ours = vec![];
    encode_message(&msg, &mut ours, true).unwrap();
    codec::fragment_last(&mut ours, 0, BEAM_FRAGMENT, 0x48_0000_0093);
    assert_eq!(ours.len(), frames.len());
    assert!(ours == frames, "fragments differ from the BEAM's");
}
