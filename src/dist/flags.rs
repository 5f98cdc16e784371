//! Distribution flags this node offers and requires.
//!
//! Defined here rather than taken from `erl_dist::DistributionFlags`:
//! erl_dist 0.8 gives MANDATORY_25_DIGEST as `1 << 36` (a typo in the OTP
//! docs), while OTP's headers and the BEAM use `0x0400_0000`.

/// Reference format with 3 words.
pub const EXTENDED_REFERENCES: u64 = 0x4;
/// Monitors of processes.
pub const DIST_MONITOR: u64 = 0x8;
/// FUN_EXT.
pub const FUN_TAGS: u64 = 0x10;
/// Monitors of registered names. Without it *and* DIST_MONITOR the BEAM
/// sends no monitor signals at all to a non-BEAM node.
pub const DIST_MONITOR_NAME: u64 = 0x20;
/// NEW_FUN_EXT.
pub const NEW_FUN_TAGS: u64 = 0x80;
/// Extended pid and port format.
pub const EXTENDED_PIDS_PORTS: u64 = 0x100;
/// EXPORT_EXT.
pub const EXPORT_PTR_TAG: u64 = 0x200;
/// Bit binaries.
pub const BIT_BINARIES: u64 = 0x400;
/// NEW_FLOAT_EXT.
pub const NEW_FLOATS: u64 = 0x800;
/// The atom cache in distribution headers (`DFLAG_DIST_HDR_ATOM_CACHE`).
pub const DIST_HDR_ATOM_CACHE: u64 = 0x2000;
/// UTF-8 atoms.
pub const UTF8_ATOMS: u64 = 0x1_0000;
/// Maps.
pub const MAP_TAG: u64 = 0x2_0000;
/// 32-bit creations.
pub const BIG_CREATION: u64 = 0x4_0000;
/// SEND_SENDER control message.
pub const SEND_SENDER: u64 = 0x8_0000;
/// Payload variants of exit signals.
pub const EXIT_PAYLOAD: u64 = 0x40_0000;
/// Fragmented messages.
pub const FRAGMENTS: u64 = 0x80_0000;
/// The version 6 handshake.
pub const HANDSHAKE_23: u64 = 0x100_0000;
/// The new link protocol.
pub const UNLINK_ID: u64 = 0x200_0000;
/// Stands for all OTP 25 mandatory flags.
pub const MANDATORY_25_DIGEST: u64 = 0x400_0000;
/// Published (visible) node: never set here, this node is hidden.
pub const PUBLISHED: u64 = 0x1;
/// Full 32-bit pid fields, V4 ports, 5-word refs.
pub const V4_NC: u64 = 1 << 34;
/// Process aliases: the ALIAS_SEND control message (OTP 24+). Bit 35,
/// `16#08 bsl 32` in OTP's dist.hrl (bit 33 is NAME_ME).
pub const ALIAS: u64 = 1 << 35;
/// The peer asks us for a name (dynamic names; not supported here).
pub const NAME_ME: u64 = 1 << 33;

/// The flags OTP 25 requires of every peer.
pub const MANDATORY_25: u64 = EXTENDED_REFERENCES
    | FUN_TAGS
    | NEW_FUN_TAGS
    | EXTENDED_PIDS_PORTS
    | EXPORT_PTR_TAG
    | BIT_BINARIES
    | NEW_FLOATS
    | UTF8_ATOMS
    | MAP_TAG
    | BIG_CREATION
    | HANDSHAKE_23;

/// What this hidden node advertises: the OTP 25 mandatory set spelled out
/// and as the digest bit, the OTP 26+ additions (V4_NC, UNLINK_ID), both
/// monitor flags, SEND_SENDER, EXIT_PAYLOAD, FRAGMENTS and ALIAS (we send
/// ALIAS_SEND to answer a gen_server call made with an alias; ALIAS_SEND
/// to us is dropped, as we create no aliases), and the atom cache in
/// distribution headers, which BEAM peers then use for what they send us
/// (we read it, `dist::codec::AtomCache`; what we send lists no entries).
/// Never PUBLISHED.
pub const OFFERED: u64 = MANDATORY_25
    | DIST_HDR_ATOM_CACHE
    | MANDATORY_25_DIGEST
    | V4_NC
    | UNLINK_ID
    | DIST_MONITOR
    | DIST_MONITOR_NAME
    | SEND_SENDER
    | EXIT_PAYLOAD
    | FRAGMENTS
    | ALIAS;

/// A peer's flags with the digest bit expanded, as `dist_util` does.
pub fn expand(flags: u64) -> u64 {
    if flags & MANDATORY_25_DIGEST != 0 {
        flags | MANDATORY_25
    } else {
        flags
    }
}

/// Names of the mandatory flags a peer lacks (empty when it has all).
pub fn missing_mandatory(peer: u64) -> Vec<&'static str> {
    let peer = expand(peer);
    [
        (EXTENDED_REFERENCES, "EXTENDED_REFERENCES"),
        (FUN_TAGS, "FUN_TAGS"),
        (NEW_FUN_TAGS, "NEW_FUN_TAGS"),
        (EXTENDED_PIDS_PORTS, "EXTENDED_PIDS_PORTS"),
        (EXPORT_PTR_TAG, "EXPORT_PTR_TAG"),
        (BIT_BINARIES, "BIT_BINARIES"),
        (NEW_FLOATS, "NEW_FLOATS"),
        (UTF8_ATOMS, "UTF8_ATOMS"),
        (MAP_TAG, "MAP_TAG"),
        (BIG_CREATION, "BIG_CREATION"),
        (HANDSHAKE_23, "HANDSHAKE_23"),
    ]
    .into_iter()
    .filter(|(f, _)| peer & f == 0)
    .map(|(_, n)| n)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn mandatory_mask_matches_otp() {
        assert_eq!(MANDATORY_25, 0x0107_0F94);
        assert!(missing_mandatory(MANDATORY_25_DIGEST).is_empty());
        assert_eq!(
            missing_mandatory(MANDATORY_25 & !BIG_CREATION),
            vec!["BIG_CREATION"]
        );
        assert_eq!(OFFERED & PUBLISHED, 0);
        assert_eq!(OFFERED & NAME_ME, 0);
        assert_eq!(ALIAS, 0x8_0000_0000);
    }
}
