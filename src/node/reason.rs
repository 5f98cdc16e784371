//! Why a peer went down or could not be reached, typed, so that callers
//! (the CLI's error kinds, the cluster keeper, tests) match on a variant
//! instead of on the text of a message.

use crate::dist::connection::ConnectionError;
use crate::dist::handshake::{HandshakeError, Status};
use std::time::Duration;

/// Why a connection to a peer went down, or why it could not be made
/// ([`crate::node::NodeEvent::Down`], [`crate::Node::connect`]).
///
/// The text of each (its `Display`) is the message the failure was
/// reported with before it was typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DownReason {
    /// The cookies differ: the peer's digest did not match ours, or the
    /// peer closed the handshake after checking ours.
    #[error("handshake: {0}")]
    WrongCookie(HandshakeError),
    /// The names cannot connect: one node has a short name and the other a
    /// long one.
    #[error("{0}")]
    MixedNames(String),
    /// The peer refused us at the handshake's status step (`not_allowed`,
    /// or `nok` when no connection of its own came instead).
    #[error("handshake: the peer refused the connection: status {0}")]
    Refused(Status),
    /// Another handshake failure (bad name, missing flags, garbage, the
    /// peer closing at another step).
    #[error("handshake: {0}")]
    Handshake(HandshakeError),
    /// The peer could not be found or reached (EPMD lookup, TCP connect),
    /// or the node name is not one we can dial.
    #[error("{0}")]
    Unreachable(String),
    /// The handshake took too long.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The peer was silent for `net_ticktime` (`net_tick_timeout`).
    #[error("net_tick_timeout: no data from the peer for {0:?}")]
    TickTimeout(Duration),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    ClosedByPeer,
    /// We closed it with [`crate::Node::disconnect`].
    #[error("disconnected")]
    Disconnected,
    /// The peer dialled again (a restarted node, or the winner of a
    /// simultaneous connect): the new connection replaced this one.
    #[error("replaced by a new connection")]
    Replaced,
    /// The peer could not keep up: more than `max_peer_queue` (messages,
    /// or bytes) was queued for it, or it had fallen behind while every
    /// peer's queue together was past `max_total_queue`.
    #[error("outgoing queue overflow")]
    QueueOverflow,
    /// The peer held more monitors and links on our processes than
    /// `max_peer_holds`, or more than its share while every peer's
    /// together were past `max_total_holds`.
    #[error("too many monitors and links on our processes")]
    HoldsOverflow,
    /// We closed it otherwise (the node shutting down).
    #[error("connection closed locally")]
    ClosedLocally,
    /// The connection's task panicked (a bug); the panic was contained.
    #[error("connection task crashed: {0}")]
    Crashed(String),
    /// A socket error.
    #[error("io: {message}")]
    Io {
        /// Its kind.
        kind: std::io::ErrorKind,
        /// Its text.
        message: String,
    },
    /// The peer sent something we could not decode.
    #[error("bad input from peer: {0}")]
    Decode(String),
}

impl DownReason {
    /// Whether the cookies differ ([`DownReason::WrongCookie`]).
    pub fn is_wrong_cookie(&self) -> bool {
        matches!(self, DownReason::WrongCookie(_))
    }

    /// Whether the network lost the connection rather than the peer
    /// closing it: the peer went silent ([`DownReason::TickTimeout`]: a
    /// netsplit, a frozen host) or the socket failed
    /// ([`DownReason::Io`]: a reset from a middlebox that forgot the
    /// flow, an unreachable host).
    pub fn is_network_loss(&self) -> bool {
        matches!(self, DownReason::TickTimeout(_) | DownReason::Io { .. })
    }

    /// Whether the peer refused us for good, until an operator mends it: a
    /// wrong cookie ([`DownReason::WrongCookie`]), names that cannot mix
    /// ([`DownReason::MixedNames`]) or `not_allowed`. A `nok` (a
    /// simultaneous connect the peer wins) is no refusal.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            DownReason::WrongCookie(_)
                | DownReason::MixedNames(_)
                | DownReason::Refused(Status::NotAllowed)
        )
    }
}

impl From<HandshakeError> for DownReason {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::CookieMismatch | HandshakeError::ClosedAfterReply => {
                DownReason::WrongCookie(e)
            }
            HandshakeError::Rejected(s) => DownReason::Refused(s),
            e => DownReason::Handshake(e),
        }
    }
}

impl From<ConnectionError> for DownReason {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Io(e) => DownReason::Io {
                kind: e.kind(),
                message: e.to_string(),
            },
            ConnectionError::Handshake(h) => h.into(),
            ConnectionError::Decode(d) => DownReason::Decode(d.to_string()),
            ConnectionError::TickTimeout(t) => DownReason::TickTimeout(t),
            ConnectionError::Closed => DownReason::ClosedByPeer,
            ConnectionError::ClosedLocally => DownReason::ClosedLocally,
            ConnectionError::Unreachable(why) => DownReason::Unreachable(why),
            ConnectionError::MixedNames(why) => DownReason::MixedNames(why),
            ConnectionError::HandshakeTimeout => DownReason::HandshakeTimeout,
            ConnectionError::Crashed(why) => DownReason::Crashed(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_keep_their_text_and_get_a_type() {
        type Case = (ConnectionError, fn(&DownReason) -> bool);
        let cases: Vec<Case> = vec![
            (
                ConnectionError::Handshake(HandshakeError::ClosedAfterReply),
                |r| r.is_wrong_cookie(),
            ),
            (
                ConnectionError::Handshake(HandshakeError::CookieMismatch),
                |r| r.is_wrong_cookie(),
            ),
            (
                ConnectionError::Handshake(HandshakeError::Rejected(Status::NotAllowed)),
                |r| *r == DownReason::Refused(Status::NotAllowed),
            ),
            (ConnectionError::MixedNames("short/long".into()), |r| {
                matches!(r, DownReason::MixedNames(_))
            }),
            (ConnectionError::Unreachable("no node x".into()), |r| {
                matches!(r, DownReason::Unreachable(_))
            }),
            (ConnectionError::TickTimeout(Duration::from_secs(4)), |r| {
                matches!(r, DownReason::TickTimeout(_))
            }),
            (ConnectionError::Closed, |r| *r == DownReason::ClosedByPeer),
            (
                ConnectionError::Io(std::io::ErrorKind::ConnectionReset.into()),
                |r| {
                    matches!(
                        r,
                        DownReason::Io {
                            kind: std::io::ErrorKind::ConnectionReset,
                            ..
                        }
                    )
                },
            ),
        ];
        for (e, is) in cases {
            let text = e.to_string();
            let r = DownReason::from(e);
            assert!(is(&r), "{r:?}");
            assert_eq!(r.to_string(), text);
        }
    }

    #[test]
    fn the_network_loses_a_connection_by_silence_or_a_socket_error() {
        let lost = [
            DownReason::TickTimeout(std::time::Duration::from_secs(4)),
            DownReason::Io {
                kind: std::io::ErrorKind::ConnectionReset,
                message: "reset".into(),
            },
        ];
        assert!(lost.iter().all(DownReason::is_network_loss));
        let left = [
            DownReason::ClosedByPeer,
            DownReason::Disconnected,
            DownReason::Replaced,
            DownReason::ClosedLocally,
            DownReason::HandshakeTimeout,
        ];
        assert!(!left.iter().any(DownReason::is_network_loss));
    }
}
