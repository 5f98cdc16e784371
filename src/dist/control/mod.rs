//! Our own control-message codec: a
//! [`Message`](erl_dist::message::Message) is written straight into the
//! connection's output buffer (length placeholder, header, control
//! tuple, payload, then the length patched in; with the peer's atom cache,
//! [`encode_message_cached`], the header's list of atoms is put in after
//! the terms), and a received message is validated once and decoded from
//! the packet bytes where they lie.
//!
//! Encoding writes the control tuple field by field (no intermediate
//! `Tuple`, no per-message `Vec`) and never re-reads what it wrote: it
//! knows where each term ends. The unused slot of `SEND` and `REG_SEND` is
//! the empty atom `''`, as the BEAM writes it (erl_dist 0.8 writes `{}`).
//! Terms are written as `eetf` 0.11 writes them (small atoms as
//! `SMALL_ATOM_UTF8_EXT`, a list of bytes as `STRING_EXT`, `NEW_PID_EXT`,
//! `NEWER_REFERENCE_EXT`, `NEW_FLOAT_EXT`), which is also what OTP 25's
//! `term_to_binary` writes for those terms; the rare kinds (big integers,
//! funs) go through `eetf`'s encoder.
//!
//! Decoding reads the control term and the payload where they lie in the
//! packet, each checked and built in one pass by our own term decoder
//! ([`crate::term::decode`](mod@crate::term::decode)), and turns the
//! control tuple into a [`Message`](erl_dist::message::Message) as erl_dist's `Message::read_from`
//! would: no copy of the message, no second walk over its bytes.
//! [`decode_terms_two_pass`] keeps the former path (validator, then
//! erl_dist and `eetf`) as the reference for tests and fuzzing.

mod decode;
mod encode;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use decode::reg_send_head;
pub use decode::{
    decode_message, decode_terms, decode_terms_for, decode_terms_in, decode_terms_two_pass,
    Receivers, Target,
};
pub use encode::{
    encode_message, encode_message_cached, encode_message_cached_with, encode_message_with,
    message_cost, message_memory, message_size, put_term, term_size,
};
pub(super) use encode::{
    put_packet, put_pid, put_pid_parts, put_ref_parts, SMALL_INTEGER, SMALL_TUPLE,
};

/// Why an outgoing message could not be encoded (it is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An atom of more than 255 characters (BEAM takes none; a peer that
    /// got one would drop the connection).
    #[error("atom of {0} characters: over the 255 BEAM takes")]
    AtomTooLong(usize),
    /// A reference of more than [`crate::term::MAX_REFERENCE_WORDS`] id words
    /// (BEAM takes none).
    #[error("reference of {0} words: over the 5 BEAM takes")]
    ReferenceTooLong(usize),
    /// A binary, list, tuple or map with more than 2^32 - 1 elements or bytes.
    #[error("term with {0} elements or bytes is too large to encode")]
    TooLarge(usize),
    /// `eetf` refused a term (a reference id over 65,535 words, ...).
    #[error("term: {0}")]
    Term(String),
}

/// A term that could not be written, said as the term module says it
/// ([`TermError::Encode`](crate::term::TermError::Encode)).
impl From<EncodeError> for crate::term::TermError {
    fn from(e: EncodeError) -> Self {
        crate::term::TermError::Encode(e.to_string())
    }
}
