//! A received message's payload: views into the frames it came in (no
//! copy). A party sends each message as one ZeroMQ frame, but the frame
//! guard forwards a large frame as several that grow with the bytes that
//! arrived (`net/zmtp.rs`), so a large message arrives as their parts;
//! sealed chunks and decoded words may straddle two parts.

use crate::net::noise;
use crate::net::tcp::read_frame;
use crate::net::Msg;
use bytes::Bytes;
use std::io::Read;

/// The parts, and whether they are opened already (a sealed frame opened
/// early, `ZmqTransport::abort_from`).
#[derive(Clone, Debug, Default)]
pub(super) struct Body(Vec<Bytes>, bool);

impl Body {
    pub(super) fn new(parts: Vec<Bytes>) -> Body {
        Body(parts, false)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    /// The payload in one piece: a copy only when it came in several.
    pub(super) fn bytes(&self) -> Bytes {
        match &self.0[..] {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => Bytes::from(parts.concat()),
        }
    }

    /// Opened under the sender's Noise keys (`noise::open_parts`); a body
    /// opened already is itself (the keys' nonce does not move).
    pub(super) fn open(&self, st: &mut snow::TransportState) -> std::io::Result<Body> {
        if self.1 {
            return Ok(self.clone());
        }
        let plain = noise::open_parts(st, &self.0)?;
        Ok(Body(vec![Bytes::from(plain)], true))
    }

    /// The reason an abort frame carries, when the (plain) payload is one;
    /// a data frame's first 8 bytes only are read.
    pub(super) fn abort_notice(&self) -> Option<String> {
        let mut r = Parts {
            parts: &self.0,
            i: 0,
            off: 0,
        };
        let mut len = [0u8; 8];
        r.read_exact(&mut len).ok()?;
        if u64::from_le_bytes(len) != crate::net::frame::ABORT {
            return None;
        }
        match self.read_frame() {
            Ok((Msg::Abort(why), _)) => Some(why),
            _ => None,
        }
    }

    /// The frame the payload encodes, and whether it is all of it (no
    /// trailing bytes).
    pub(super) fn read_frame(&self) -> std::io::Result<(Msg, bool)> {
        let mut r = Parts {
            parts: &self.0,
            i: 0,
            off: 0,
        };
        let m = read_frame(&mut r)?;
        Ok((m, r.read(&mut [0u8; 1])? == 0))
    }
}

/// A reader over the parts, in order.
struct Parts<'a> {
    parts: &'a [Bytes],
    i: usize,
    off: usize,
}

impl Read for Parts<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < out.len() && self.i < self.parts.len() {
            let p = &self.parts[self.i][self.off..];
            let k = p.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&p[..k]);
            n += k;
            self.off += k;
            if self.off == self.parts[self.i].len() {
                self.i += 1;
                self.off = 0;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tcp::encode_frame;

    /// `b` cut into parts at `cuts` (offsets, ascending).
    fn cut(b: &[u8], cuts: &[usize]) -> Body {
        let mut parts = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain([b.len()].iter()) {
            parts.push(Bytes::copy_from_slice(&b[at..c]));
            at = c;
        }
        Body::new(parts)
    }

    /// A frame in parts cut anywhere, sealed or not, decodes as in one
    /// piece; trailing bytes and truncation are still seen.
    #[test]
    fn a_payload_in_parts_reads_as_in_one() {
        let words: Vec<u64> = (0..40_000u64).map(|i| i * 0x9e37_79b9).collect();
        let mut plain = Vec::new();
        encode_frame(&Msg::Data(9, words.clone()), &mut plain);
        let (a, b) = crate::net::noise::tests::pair();
        let (mut a, mut b) = (a, b);
        for cuts in [
            vec![],
            vec![1],
            vec![7, 65_540, 65_541, 200_000],
            vec![65_537],
        ] {
            let body = cut(&plain, &cuts);
            assert_eq!(body.bytes(), plain);
            let (m, whole) = body.read_frame().unwrap();
            assert!(whole && matches!(m, Msg::Data(9, ref v) if *v == words));
            let sealed = noise::seal(&mut a, &plain).unwrap();
            let opened = cut(&sealed, &cuts).open(&mut b).unwrap();
            assert_eq!(opened.bytes(), plain);
            let mut longer = plain.clone();
            longer.push(0);
            assert!(
                !cut(&longer, &cuts).read_frame().unwrap().1,
                "trailing byte"
            );
            assert!(cut(&plain[..plain.len() - 1], &cuts).read_frame().is_err());
        }
    }
}
