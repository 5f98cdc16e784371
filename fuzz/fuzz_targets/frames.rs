//! Shared by the fuzz targets that feed several messages: the input split
//! into messages, each a 2-byte big-endian length and that many bytes (the
//! last one cut short where the input ends).

/// The messages of `data`, in order.
pub fn frames(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 2 {
            return None;
        }
        let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let (msg, tail) = rest[2..].split_at(n);
        rest = tail;
        Some(msg)
    })
}
