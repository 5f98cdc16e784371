//! The distribution handshake (protocol version 6, OTP 23+), as a pure state
//! machine: it is fed whole handshake messages (the bytes after the 2-byte
//! length) and answers with messages to send. The challenge is passed in, so
//! tests drive it with byte scripts.
//!
//! ```text
//!  initiator (us -> them)                 acceptor (them -> us)
//!  send 'N' name      --> ExpectStatus     ExpectName   <-- 'N' name
//!  ExpectStatus       <-- 's' status       answer 's' status, 'N' challenge
//!  ExpectChallenge    <-- 'N' challenge    ExpectReply  <-- 'r' chal+digest
//!  send 'r'           --> ExpectAck        answer 'a' digest, done
//!  ExpectAck          <-- 'a' digest, done
//! ```
//!
//! Unlike erl_dist 0.8, the acceptor never answers `alive` (which erl_dist
//! follows without reading the peer's `true`/`false`): a peer that dials us
//! while an old connection to it still lives is a restarted node with a new
//! creation, so the caller drops the old connection and we answer `ok`.
//! Digests are compared in constant time; the cookie is never logged.

use super::flags;
use crate::config::{Cookie, NodeName};

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A message that does not fit the state.
    #[error("unexpected handshake message (tag {tag}) while {state}")]
    UnexpectedTag {
        /// The first byte.
        tag: u8,
        /// What we were waiting for.
        state: &'static str,
    },
    /// A message too short or otherwise malformed.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// The peer's digest did not match: it has another cookie.
    #[error("the peer's digest does not match our cookie (wrong cookie on one side)")]
    CookieMismatch,
    /// The peer refused us at the status step (`nok`, `not_allowed`, or a
    /// status we cannot go on with, such as `named:` we never ask for).
    #[error("the peer refused the connection: status {0}")]
    Rejected(Status),
    /// The peer answered a status this protocol version does not know.
    #[error("unknown handshake status {0:?}")]
    UnknownStatus(String),
    /// We refused the peer at the name step with this status (the acceptor
    /// side, see [`crate::dist::connection::handshake_in`]).
    #[error("refused the peer at the name step: status {0}")]
    Refused(Status),
    /// The peer lacks distribution flags OTP 25 requires.
    #[error("peer {peer} lacks mandatory distribution flags {missing:?}")]
    MissingFlags {
        /// The peer.
        peer: String,
        /// The flags.
        missing: Vec<&'static str>,
    },
    /// Another node than the one dialled answered
    /// ([`Initiator::dialling`]).
    #[error("dialled {dialled}, but {answered} answered there")]
    WrongNode {
        /// The node we meant to reach.
        dialled: String,
        /// The node that answered.
        answered: String,
    },
    /// The peer's node name is not `alive@host`.
    #[error("bad peer node name {0:?}")]
    BadName(String),
    /// The peer asked for a dynamic name, which this node does not hand out.
    #[error("dynamic node names are not supported")]
    NameMe,
    /// The peer closed the connection after our challenge reply: a BEAM
    /// does that, logging "Invalid challenge reply", when our digest does
    /// not match its cookie.
    #[error(
        "the peer closed the connection after checking our cookie: \
         probably a wrong cookie (the cookies here and on the peer differ)"
    )]
    ClosedAfterReply,
    /// The peer closed the connection before the handshake's end at another
    /// step (`while` says which).
    #[error("the peer closed the connection while {while_}")]
    Closed {
        /// What we were waiting for.
        while_: &'static str,
    },
}

/// A handshake status: what the acceptor answers the initiator's name with
/// (`'s'` then the status text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `ok`: go on.
    Ok,
    /// `ok_simultaneous`: go on; the acceptor dropped its own attempt.
    OkSimultaneous,
    /// `nok`: a simultaneous connect the acceptor wins; its own connection
    /// comes instead.
    Nok,
    /// `not_allowed`: the acceptor does not let us connect.
    NotAllowed,
    /// `alive`: the acceptor still holds a connection from an earlier
    /// incarnation of us; the initiator answers `true` to replace it.
    Alive,
    /// `named:`: the acceptor gives us a dynamic name (only answered when
    /// asked for one, which we never do).
    Named,
}

impl Status {
    /// The status as sent on the wire (after the `'s'` tag; `named:` is
    /// followed by the name given).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::OkSimultaneous => "ok_simultaneous",
            Status::Nok => "nok",
            Status::NotAllowed => "not_allowed",
            Status::Alive => "alive",
            Status::Named => "named:",
        }
    }

    /// Parses a status message's text (after the `'s'` tag); `None` for one
    /// the protocol does not define.
    pub fn parse(text: &[u8]) -> Option<Status> {
        Some(match text {
            b"ok" => Status::Ok,
            b"ok_simultaneous" => Status::OkSimultaneous,
            b"nok" => Status::Nok,
            b"not_allowed" => Status::NotAllowed,
            b"alive" => Status::Alive,
            t if t.starts_with(b"named:") => Status::Named,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What we learn about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node name.
    pub name: NodeName,
    /// Its flags (digest bit expanded).
    pub flags: u64,
    /// Its creation.
    pub creation: u32,
}

/// Our side of the handshake: who we are.
#[derive(Debug, Clone)]
pub struct Local {
    /// Our name.
    pub name: NodeName,
    /// Our creation.
    pub creation: u32,
    /// Our flags.
    pub flags: u64,
    /// The cookie.
    pub cookie: Cookie,
}

/// The digest: MD5 of the cookie followed by the challenge in decimal.
pub fn digest(cookie: &Cookie, challenge: u32) -> [u8; 16] {
    let mut ctx = md5::Context::new();
    ctx.consume(cookie.expose().as_bytes());
    ctx.consume(challenge.to_string().as_bytes());
    ctx.finalize().0
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Output of one step.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these messages (each without its length prefix) and wait for
    /// the next one.
    Continue(Vec<Vec<u8>>),
    /// The acceptor got the peer's name: the caller decides whether to go
    /// on (see [`Acceptor::accept`]).
    NameReceived(PeerInfo),
    /// Done: send these last messages, then the connection is up.
    Done(Vec<Vec<u8>>, PeerInfo),
}

/// Wraps a handshake message body with its 2-byte length.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

fn name_msg(local: &Local) -> Vec<u8> {
    let name = local.name.to_string();
    let mut m = vec![b'N'];
    m.extend_from_slice(&local.flags.to_be_bytes());
    m.extend_from_slice(&local.creation.to_be_bytes());
    m.extend_from_slice(&(name.len() as u16).to_be_bytes());
    m.extend_from_slice(name.as_bytes());
    m
}

fn challenge_msg(local: &Local, challenge: u32) -> Vec<u8> {
    let name = local.name.to_string();
    let mut m = vec![b'N'];
    m.extend_from_slice(&local.flags.to_be_bytes());
    m.extend_from_slice(&challenge.to_be_bytes());
    m.extend_from_slice(&local.creation.to_be_bytes());
    m.extend_from_slice(&(name.len() as u16).to_be_bytes());
    m.extend_from_slice(name.as_bytes());
    m
}

fn be_u16(b: &[u8], at: usize) -> Result<u16, HandshakeError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(HandshakeError::Malformed("truncated"))
}
fn be_u32(b: &[u8], at: usize) -> Result<u32, HandshakeError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(HandshakeError::Malformed("truncated"))
}
fn be_u64(b: &[u8], at: usize) -> Result<u64, HandshakeError> {
    b.get(at..at + 8)
        .map(|s| u64::from_be_bytes(s.try_into().unwrap_or([0; 8])))
        .ok_or(HandshakeError::Malformed("truncated"))
}

fn parse_name(b: &[u8], at: usize) -> Result<NodeName, HandshakeError> {
    let n = be_u16(b, at)? as usize;
    let raw = b
        .get(at + 2..at + 2 + n)
        .ok_or(HandshakeError::Malformed("name truncated"))?;
    let s = std::str::from_utf8(raw).map_err(|_| HandshakeError::Malformed("name not UTF-8"))?;
    // No node name holds a control character (`erl` takes none, EPMD
    // registers none). Refused, a name with a newline cannot forge a line
    // of the log wherever the peer's name is written, and this error
    // shows it escaped.
    if s.chars().any(char::is_control) {
        return Err(HandshakeError::BadName(s.to_string()));
    }
    NodeName::parse(s).map_err(|_| HandshakeError::BadName(s.to_string()))
}

fn check_flags(name: &NodeName, f: u64) -> Result<u64, HandshakeError> {
    let missing = flags::missing_mandatory(f);
    if missing.is_empty() {
        Ok(flags::expand(f))
    } else {
        Err(HandshakeError::MissingFlags {
            peer: name.to_string(),
            missing,
        })
    }
}

/// The side that dials.
#[derive(Debug)]
pub struct Initiator {
    local: Local,
    our_challenge: u32,
    state: IState,
    /// The node we meant to reach, when known ([`Initiator::dialling`]).
    dialled: Option<NodeName>,
}

#[derive(Debug)]
enum IState {
    ExpectStatus,
    ExpectChallenge,
    ExpectAck(PeerInfo),
    Finished,
}

impl Initiator {
    /// Starts a handshake; returns the machine and the first message (our
    /// name) to send.
    pub fn start(local: Local, our_challenge: u32) -> (Initiator, Vec<u8>) {
        let first = name_msg(&local);
        (
            Initiator {
                local,
                our_challenge,
                state: IState::ExpectStatus,
                dialled: None,
            },
            first,
        )
    }

    /// Refuse a challenge from any node but `node`, as BEAM refuses it
    /// (`dist_util`'s `recv_challenge`): another node listening where we
    /// looked for `node` (a stale EPMD entry, a port reused, two nodes of
    /// an EPMD-less cluster on one host) is not taken for it.
    pub fn dialling(mut self, node: NodeName) -> Initiator {
        self.dialled = Some(node);
        self
    }

    /// What it means that the peer closed the connection now.
    pub fn closed_by_peer(&self) -> HandshakeError {
        match self.state {
            IState::ExpectAck(_) => HandshakeError::ClosedAfterReply,
            IState::ExpectStatus => HandshakeError::Closed {
                while_: "we waited for the status (it may refuse this node's name)",
            },
            IState::ExpectChallenge => HandshakeError::Closed {
                while_: "we waited for the challenge",
            },
            IState::Finished => HandshakeError::Closed {
                while_: "finishing the handshake",
            },
        }
    }

    /// Feeds one received message. After an error the handshake is over:
    /// every further message is refused.
    pub fn handle(&mut self, msg: &[u8]) -> Result<Step, HandshakeError> {
        // Any error ends the handshake: the state is taken first.
        let state = std::mem::replace(&mut self.state, IState::Finished);
        let tag = *msg
            .first()
            .ok_or(HandshakeError::Malformed("empty message"))?;
        match state {
            IState::ExpectStatus => {
                if tag != b's' {
                    return Err(HandshakeError::UnexpectedTag {
                        tag,
                        state: "waiting for the status",
                    });
                }
                match Status::parse(&msg[1..]) {
                    Some(Status::Ok | Status::OkSimultaneous) => {
                        self.state = IState::ExpectChallenge;
                        Ok(Step::Continue(vec![]))
                    }
                    Some(Status::Alive) => {
                        // The peer still holds a connection from an earlier
                        // incarnation of us: tell it to drop that one.
                        self.state = IState::ExpectChallenge;
                        Ok(Step::Continue(vec![b"strue".to_vec()]))
                    }
                    Some(refused) => Err(HandshakeError::Rejected(refused)),
                    None => Err(HandshakeError::UnknownStatus(
                        String::from_utf8_lossy(&msg[1..]).into_owned(),
                    )),
                }
            }
            IState::ExpectChallenge => {
                if tag != b'N' {
                    return Err(HandshakeError::UnexpectedTag {
                        tag,
                        state: "waiting for the challenge",
                    });
                }
                let f = be_u64(msg, 1)?;
                let challenge = be_u32(msg, 9)?;
                let creation = be_u32(msg, 13)?;
                let name = parse_name(msg, 17)?;
                if let Some(dialled) = self.dialled.as_ref().filter(|d| **d != name) {
                    return Err(HandshakeError::WrongNode {
                        dialled: dialled.to_string(),
                        answered: name.to_string(),
                    });
                }
                let flags = check_flags(&name, f)?;
                let mut reply = vec![b'r'];
                reply.extend_from_slice(&self.our_challenge.to_be_bytes());
                reply.extend_from_slice(&digest(&self.local.cookie, challenge));
                self.state = IState::ExpectAck(PeerInfo {
                    name,
                    flags,
                    creation,
                });
                Ok(Step::Continue(vec![reply]))
            }
            IState::ExpectAck(peer) => {
                if tag != b'a' || msg.len() != 17 {
                    return Err(HandshakeError::UnexpectedTag {
                        tag,
                        state: "waiting for the challenge ack",
                    });
                }
                if !ct_eq(&msg[1..], &digest(&self.local.cookie, self.our_challenge)) {
                    return Err(HandshakeError::CookieMismatch);
                }
                Ok(Step::Done(vec![], peer))
            }
            IState::Finished => Err(HandshakeError::Malformed(
                "message after the handshake ended",
            )),
        }
    }
}

/// The side that was dialled.
#[derive(Debug)]
pub struct Acceptor {
    local: Local,
    our_challenge: u32,
    state: AState,
}

#[derive(Debug)]
enum AState {
    ExpectName,
    Deciding(PeerInfo),
    ExpectReply(PeerInfo),
    Finished,
}

impl Acceptor {
    /// A new acceptor that will send `our_challenge`.
    pub fn new(local: Local, our_challenge: u32) -> Acceptor {
        Acceptor {
            local,
            our_challenge,
            state: AState::ExpectName,
        }
    }

    /// Feeds one received message. After an error the handshake is over:
    /// every further message is refused.
    pub fn handle(&mut self, msg: &[u8]) -> Result<Step, HandshakeError> {
        // Any error ends the handshake: the state is taken first.
        let state = std::mem::replace(&mut self.state, AState::Finished);
        let tag = *msg
            .first()
            .ok_or(HandshakeError::Malformed("empty message"))?;
        match state {
            AState::ExpectName => {
                if tag != b'N' {
                    return Err(HandshakeError::UnexpectedTag {
                        tag,
                        state: "waiting for the peer's name (only version 6 'N' is accepted)",
                    });
                }
                let f = be_u64(msg, 1)?;
                let creation = be_u32(msg, 9)?;
                if f & flags::NAME_ME != 0 {
                    return Err(HandshakeError::NameMe);
                }
                let name = parse_name(msg, 13)?;
                let flags = check_flags(&name, f)?;
                let peer = PeerInfo {
                    name,
                    flags,
                    creation,
                };
                self.state = AState::Deciding(peer.clone());
                Ok(Step::NameReceived(peer))
            }
            AState::ExpectReply(peer) => {
                if tag != b'r' || msg.len() != 21 {
                    return Err(HandshakeError::UnexpectedTag {
                        tag,
                        state: "waiting for the challenge reply",
                    });
                }
                let their_challenge = be_u32(msg, 1)?;
                if !ct_eq(&msg[5..21], &digest(&self.local.cookie, self.our_challenge)) {
                    return Err(HandshakeError::CookieMismatch);
                }
                let mut ack = vec![b'a'];
                ack.extend_from_slice(&digest(&self.local.cookie, their_challenge));
                Ok(Step::Done(vec![ack], peer))
            }
            AState::Deciding(_) => Err(HandshakeError::Malformed("message before our status")),
            AState::Finished => Err(HandshakeError::Malformed(
                "message after the handshake ended",
            )),
        }
    }

    /// After [`Step::NameReceived`]: go on (`ok`), giving the status and
    /// challenge messages to send.
    pub fn accept(&mut self) -> Result<Vec<Vec<u8>>, HandshakeError> {
        match std::mem::replace(&mut self.state, AState::Finished) {
            AState::Deciding(peer) => {
                let out = vec![
                    b"sok".to_vec(),
                    challenge_msg(&self.local, self.our_challenge),
                ];
                self.state = AState::ExpectReply(peer);
                Ok(out)
            }
            _ => Err(HandshakeError::Malformed("accept() out of order")),
        }
    }

    /// After [`Step::NameReceived`]: refuse with a status such as
    /// [`Status::Nok`] or [`Status::NotAllowed`]; returns the message to
    /// send before closing.
    pub fn refuse(&mut self, status: Status) -> Vec<u8> {
        self.state = AState::Finished;
        let mut m = b"s".to_vec();
        m.extend_from_slice(status.as_str().as_bytes());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(name: &str, cookie: &str) -> Local {
        Local {
            name: NodeName::parse(name).unwrap(),
            creation: 7,
            flags: flags::OFFERED,
            cookie: Cookie::new(cookie),
        }
    }

    /// Runs both machines against each other.
    fn run(
        ci: &str,
        ca: &str,
    ) -> (
        Result<PeerInfo, HandshakeError>,
        Result<PeerInfo, HandshakeError>,
    ) {
        let (mut i, first) = Initiator::start(local("a@h", ci), 11);
        let mut a = Acceptor::new(local("b@h", ca), 22);
        let Step::NameReceived(p) = a.handle(&first).unwrap() else {
            panic!()
        };
        assert_eq!(p.name.to_string(), "a@h");
        let out = a.accept().unwrap();
        assert_eq!(i.handle(&out[0]).unwrap(), Step::Continue(vec![]));
        let Step::Continue(reply) = i.handle(&out[1]).unwrap() else {
            panic!()
        };
        let ra = match a.handle(&reply[0]) {
            Ok(Step::Done(ack, p)) => {
                let ri = match i.handle(&ack[0]) {
                    Ok(Step::Done(_, p)) => Ok(p),
                    Err(e) => Err(e),
                    _ => panic!(),
                };
                return (ri, Ok(p));
            }
            Err(e) => Err(e),
            _ => panic!(),
        };
        (Err(HandshakeError::Malformed("not reached")), ra)
    }

    #[test]
    fn both_sides_agree() {
        let (i, a) = run("c", "c");
        assert_eq!(i.unwrap().name.to_string(), "b@h");
        assert_eq!(a.unwrap().name.to_string(), "a@h");
    }

    #[test]
    fn a_node_other_than_the_one_dialled_is_refused_at_its_challenge() {
        let talk = |dialled: &str| {
            let (i, first) = Initiator::start(local("a@h", "c"), 11);
            let mut i = i.dialling(NodeName::parse(dialled).unwrap());
            let mut a = Acceptor::new(local("b@h", "c"), 22);
            a.handle(&first).unwrap();
            let out = a.accept().unwrap();
            assert_eq!(i.handle(&out[0]).unwrap(), Step::Continue(vec![]));
            i.handle(&out[1])
        };
        // No reply to the challenge: the other node never sees us up.
        assert_eq!(
            talk("x@h"),
            Err(HandshakeError::WrongNode {
                dialled: "x@h".into(),
                answered: "b@h".into(),
            })
        );
        assert!(matches!(talk("b@h"), Ok(Step::Continue(r)) if r[0][0] == b'r'));
    }

    #[test]
    fn wrong_cookie_refused() {
        let (_, a) = run("c1", "c2");
        assert_eq!(a, Err(HandshakeError::CookieMismatch));
    }

    #[test]
    fn digest_is_md5_of_cookie_and_decimal_challenge() {
        let d = digest(&Cookie::new("abc"), 1234);
        assert_eq!(d, md5::compute(b"abc1234").0);
    }

    #[test]
    fn alive_status_answered_true() {
        let (mut i, _) = Initiator::start(local("a@h", "c"), 1);
        assert_eq!(
            i.handle(b"salive").unwrap(),
            Step::Continue(vec![b"strue".to_vec()])
        );
    }

    /// Splits a fuzz input (a mode byte, then messages with 2-byte lengths)
    /// as fuzz/fuzz_targets/handshake.rs does.
    fn fuzz_messages(data: &[u8]) -> Vec<Vec<u8>> {
        let mut msgs = Vec::new();
        let mut rest = data.get(1..).unwrap_or_default();
        while rest.len() >= 2 {
            let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let take = n.min(rest.len() - 2);
            msgs.push(rest[2..2 + take].to_vec());
            rest = &rest[2 + take..];
        }
        msgs
    }

    #[test]
    fn fuzz_regressions_replay() {
        // Inputs kept from handshake fuzzer crashes (fuzz/regressions/
        // handshake-*): once either side has failed, it stays failed.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("fuzz/regressions") {
            let path = e.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if !file.starts_with("handshake-") {
                continue;
            }
            let msgs = fuzz_messages(&std::fs::read(&path).unwrap());
            let mut a = Acceptor::new(local("b@h", "c"), 7);
            let mut failed = false;
            for m in &msgs {
                match a.handle(m) {
                    Err(_) => failed = true,
                    Ok(Step::NameReceived(_)) if !failed => {
                        a.accept().unwrap();
                    }
                    r => assert!(!failed, "{file}: acceptor went on after an error: {r:?}"),
                }
            }
            let (mut i, _) = Initiator::start(local("a@h", "c"), 9);
            let mut failed = false;
            for m in &msgs {
                match i.handle(m) {
                    Err(_) => failed = true,
                    r => assert!(!failed, "{file}: initiator went on after an error: {r:?}"),
                }
            }
            n += 1;
        }
        assert!(n > 0);
    }

    #[test]
    fn empty_message_ends_the_handshake() {
        // Found by fuzzing: an empty message was refused but left the state
        // as it was, so a later name was still accepted.
        let mut a = Acceptor::new(local("b@h", "c"), 2);
        assert!(a.handle(b"").is_err());
        let (_, name) = Initiator::start(local("a@h", "c"), 1);
        assert!(a.handle(&name).is_err());
        let (mut i, _) = Initiator::start(local("a@h", "c"), 1);
        assert!(i.handle(b"").is_err());
        assert!(i.handle(b"sok").is_err());
    }

    #[test]
    fn refusals_and_garbage() {
        let status = |msg: &[u8]| Initiator::start(local("a@h", "c"), 1).0.handle(msg);
        let rejected = |s| Err(HandshakeError::Rejected(s));
        assert_eq!(status(b"snot_allowed"), rejected(Status::NotAllowed));
        assert_eq!(status(b"snok"), rejected(Status::Nok));
        assert_eq!(status(b"snamed:\0\x03x@h"), rejected(Status::Named));
        assert_eq!(
            status(b"smaybe"),
            Err(HandshakeError::UnknownStatus("maybe".into()))
        );
        for s in [
            Status::Ok,
            Status::OkSimultaneous,
            Status::Nok,
            Status::NotAllowed,
            Status::Alive,
        ] {
            assert_eq!(Status::parse(s.as_str().as_bytes()), Some(s));
        }
        let mut a = Acceptor::new(local("b@h", "c"), 2);
        assert!(a.handle(b"").is_err());
        let mut a = Acceptor::new(local("b@h", "c"), 2);
        assert!(a.handle(b"N\0\0").is_err());
        let mut a = Acceptor::new(local("b@h", "c"), 2);
        // old 'n' format refused
        assert!(a.handle(b"n\0\x05\0\0\0\0a@h").is_err());
        // missing BIG_CREATION
        let mut m = vec![b'N'];
        m.extend_from_slice(&(flags::MANDATORY_25 & !flags::BIG_CREATION).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 1, 0, 3]);
        m.extend_from_slice(b"x@h");
        let mut a = Acceptor::new(local("b@h", "c"), 2);
        assert!(matches!(
            a.handle(&m),
            Err(HandshakeError::MissingFlags { .. })
        ));
    }

    #[test]
    fn a_name_with_a_control_character_is_refused_and_shown_escaped() {
        let name = "x@h\n2099-01-01T00:00:00Z  INFO forged";
        let mut m = vec![b'N'];
        m.extend_from_slice(&flags::OFFERED.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 1]);
        m.extend_from_slice(&(name.len() as u16).to_be_bytes());
        m.extend_from_slice(name.as_bytes());
        let e = Acceptor::new(local("b@h", "c"), 2).handle(&m).unwrap_err();
        assert_eq!(e, HandshakeError::BadName(name.into()));
        let shown = e.to_string();
        assert!(
            !shown.contains('\n') && shown.contains("\\n2099"),
            "{shown}"
        );
    }
}
