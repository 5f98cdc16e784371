//! EPMD requests and responses as bytes: pure encode/decode, no sockets.
//!
//! Every request is a 2-byte big-endian length followed by the request.
//! Decoders return `Ok(None)` when more bytes are needed.

use super::EpmdError;

/// ALIVE2_REQ tag.
pub const ALIVE2_REQ: u8 = 120;
/// ALIVE2_X_RESP tag (32-bit creation).
pub const ALIVE2_X_RESP: u8 = 118;
/// ALIVE2_RESP tag (16-bit creation, old EPMDs).
pub const ALIVE2_RESP: u8 = 121;
/// PORT_PLEASE2_REQ tag.
pub const PORT_PLEASE2_REQ: u8 = 122;
/// PORT2_RESP tag.
pub const PORT2_RESP: u8 = 119;
/// NAMES_REQ tag.
pub const NAMES_REQ: u8 = 110;
/// Node type of a hidden node.
pub const NODE_TYPE_HIDDEN: u8 = 72;
/// Node type of a normal (BEAM) node.
pub const NODE_TYPE_NORMAL: u8 = 77;
/// Longest request EPMD accepts here.
pub const MAX_REQUEST: usize = 1024;

/// What a node tells EPMD about itself (ALIVE2_REQ) and what PORT2_RESP says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The alive part of the node name.
    pub name: String,
    /// Its distribution listen port.
    pub port: u16,
    /// 72 hidden, 77 normal.
    pub node_type: u8,
    /// 0 = TCP/IPv4.
    pub protocol: u8,
    /// Highest distribution version.
    pub highest: u16,
    /// Lowest distribution version.
    pub lowest: u16,
    /// Extra bytes.
    pub extra: Vec<u8>,
}

impl NodeEntry {
    /// An entry for this (hidden) node speaking protocol version 6.
    pub fn hidden(name: &str, port: u16) -> Self {
        NodeEntry {
            name: name.to_string(),
            port,
            node_type: NODE_TYPE_HIDDEN,
            protocol: 0,
            highest: 6,
            lowest: 6,
            extra: Vec::new(),
        }
    }

    fn put_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.port.to_be_bytes());
        out.push(self.node_type);
        out.push(self.protocol);
        out.extend_from_slice(&self.highest.to_be_bytes());
        out.extend_from_slice(&self.lowest.to_be_bytes());
        out.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&(self.extra.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.extra);
    }

    fn parse_body(b: &[u8]) -> Result<Option<(Self, usize)>, EpmdError> {
        if b.len() < 10 {
            return Ok(None);
        }
        let nlen = u16::from_be_bytes([b[8], b[9]]) as usize;
        if b.len() < 10 + nlen + 2 {
            return Ok(None);
        }
        let name = std::str::from_utf8(&b[10..10 + nlen])
            .map_err(|_| EpmdError::Malformed("node name is not UTF-8"))?
            .to_string();
        let e = 10 + nlen;
        let elen = u16::from_be_bytes([b[e], b[e + 1]]) as usize;
        if b.len() < e + 2 + elen {
            return Ok(None);
        }
        Ok(Some((
            NodeEntry {
                port: u16::from_be_bytes([b[0], b[1]]),
                node_type: b[2],
                protocol: b[3],
                highest: u16::from_be_bytes([b[4], b[5]]),
                lowest: u16::from_be_bytes([b[6], b[7]]),
                name,
                extra: b[e + 2..e + 2 + elen].to_vec(),
            },
            e + 2 + elen,
        )))
    }
}

/// A request to EPMD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Register a node; the connection stays open for the node's life.
    Alive2(NodeEntry),
    /// Where is this node?
    PortPlease2(String),
    /// List registered names.
    Names,
}

impl Request {
    /// Encodes the request with its length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Request::Alive2(e) => {
                body.push(ALIVE2_REQ);
                e.put_body(&mut body);
            }
            Request::PortPlease2(name) => {
                body.push(PORT_PLEASE2_REQ);
                body.extend_from_slice(name.as_bytes());
            }
            Request::Names => body.push(NAMES_REQ),
        }
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// Decodes one request from the start of `b`: `Ok(None)` if more bytes
    /// are needed, else the request and how many bytes it took.
    pub fn decode(b: &[u8]) -> Result<Option<(Request, usize)>, EpmdError> {
        if b.len() < 2 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([b[0], b[1]]) as usize;
        if len == 0 || len > MAX_REQUEST {
            return Err(EpmdError::Malformed("request length"));
        }
        if b.len() < 2 + len {
            return Ok(None);
        }
        let body = &b[2..2 + len];
        let req = match body[0] {
            ALIVE2_REQ => match NodeEntry::parse_body(&body[1..])? {
                Some((e, used)) if used + 1 == len => Request::Alive2(e),
                _ => return Err(EpmdError::Malformed("ALIVE2_REQ body")),
            },
            PORT_PLEASE2_REQ => Request::PortPlease2(
                std::str::from_utf8(&body[1..])
                    .map_err(|_| EpmdError::Malformed("name is not UTF-8"))?
                    .to_string(),
            ),
            NAMES_REQ => Request::Names,
            _ => return Err(EpmdError::Malformed("unknown request")),
        };
        Ok(Some((req, 2 + len)))
    }
}

/// Encodes ALIVE2_X_RESP.
pub fn encode_alive2_resp(result: u8, creation: u32) -> Vec<u8> {
    let mut v = vec![ALIVE2_X_RESP, result];
    v.extend_from_slice(&creation.to_be_bytes());
    v
}

/// Decodes ALIVE2_X_RESP or ALIVE2_RESP: the creation, or an error if
/// EPMD refused the name.
pub fn decode_alive2_resp(b: &[u8]) -> Result<Option<u32>, EpmdError> {
    match b.first() {
        None => Ok(None),
        Some(&ALIVE2_X_RESP) if b.len() >= 6 => {
            if b[1] != 0 {
                return Err(EpmdError::Refused(b[1]));
            }
            Ok(Some(u32::from_be_bytes([b[2], b[3], b[4], b[5]])))
        }
        Some(&ALIVE2_RESP) if b.len() >= 4 => {
            if b[1] != 0 {
                return Err(EpmdError::Refused(b[1]));
            }
            Ok(Some(u32::from(u16::from_be_bytes([b[2], b[3]]))))
        }
        Some(&ALIVE2_X_RESP) | Some(&ALIVE2_RESP) => Ok(None),
        Some(_) => Err(EpmdError::Malformed("ALIVE2 response tag")),
    }
}

/// Encodes PORT2_RESP (`None`: not found).
pub fn encode_port2_resp(entry: Option<&NodeEntry>) -> Vec<u8> {
    match entry {
        None => vec![PORT2_RESP, 1],
        Some(e) => {
            let mut v = vec![PORT2_RESP, 0];
            e.put_body(&mut v);
            v
        }
    }
}

/// Decodes PORT2_RESP from a complete response (EPMD closes after it).
pub fn decode_port2_resp(b: &[u8]) -> Result<Option<NodeEntry>, EpmdError> {
    if b.len() < 2 || b[0] != PORT2_RESP {
        return Err(EpmdError::Malformed("PORT2_RESP"));
    }
    if b[1] != 0 {
        return Ok(None);
    }
    match NodeEntry::parse_body(&b[2..])? {
        Some((e, _)) => Ok(Some(e)),
        None => Err(EpmdError::Malformed("PORT2_RESP truncated")),
    }
}

/// Encodes a NAMES response.
pub fn encode_names_resp(epmd_port: u16, names: &[(String, u16)]) -> Vec<u8> {
    let mut v = u32::from(epmd_port).to_be_bytes().to_vec();
    for (n, p) in names {
        v.extend_from_slice(format!("name {n} at port {p}\n").as_bytes());
    }
    v
}

/// Decodes a complete NAMES response into (name, port) pairs.
pub fn decode_names_resp(b: &[u8]) -> Result<Vec<(String, u16)>, EpmdError> {
    if b.len() < 4 {
        return Err(EpmdError::Malformed("NAMES response"));
    }
    let text = String::from_utf8_lossy(&b[4..]);
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if let (Some("name"), Some(n), Some("at"), Some("port"), Some(p)) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        {
            if let Ok(p) = p.parse() {
                out.push((n.to_string(), p));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Alive2(NodeEntry::hidden("r", 4242)),
            Request::PortPlease2("x".into()),
            Request::Names,
        ] {
            let b = r.encode();
            assert_eq!(Request::decode(&b).unwrap(), Some((r.clone(), b.len())));
            assert_eq!(Request::decode(&b[..b.len() - 1]).unwrap(), None);
        }
    }

    #[test]
    fn golden_alive2() {
        // ALIVE2_REQ for "r" on port 0x1092, hidden, version 6..6.
        let b = Request::Alive2(NodeEntry::hidden("r", 0x1092)).encode();
        assert_eq!(
            b,
            vec![0, 14, 120, 0x10, 0x92, 72, 0, 0, 6, 0, 6, 0, 1, b'r', 0, 0]
        );
    }

    #[test]
    fn responses() {
        assert_eq!(
            decode_alive2_resp(&encode_alive2_resp(0, 7)).unwrap(),
            Some(7)
        );
        assert!(decode_alive2_resp(&encode_alive2_resp(1, 7)).is_err());
        let e = NodeEntry::hidden("n", 1);
        assert_eq!(
            decode_port2_resp(&encode_port2_resp(Some(&e))).unwrap(),
            Some(e)
        );
        assert_eq!(decode_port2_resp(&encode_port2_resp(None)).unwrap(), None);
        let names = vec![("a".to_string(), 1u16), ("b".to_string(), 2)];
        assert_eq!(
            decode_names_resp(&encode_names_resp(4369, &names)).unwrap(),
            names
        );
    }

    #[test]
    fn hostile_requests() {
        assert!(Request::decode(&[0, 0]).is_err());
        assert!(Request::decode(&[0xff, 0xff, 1]).is_err());
        assert!(Request::decode(&[0, 1, 99]).is_err());
        assert!(Request::decode(&[0, 3, 120, 0, 1]).is_err());
    }
}
