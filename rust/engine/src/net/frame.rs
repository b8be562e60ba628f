//! The frames every transport carries: a little-endian u64 length, a tag,
//! then that many u64 words (ring elements); an abort frame carries the
//! failing party's message. Decoding never allocates more than the bytes
//! received, and a frame longer than `MAX_WORDS` is an error.

use crate::net::Msg;
use std::io::{Read, Write};

/// Largest frame accepted: 2^31 ring elements (16 GiB).
pub const MAX_WORDS: u64 = 1 << 31;

/// The largest ZeroMQ message a party sends: a frame of `MAX_WORDS` ring
/// elements (16 bytes of length and tag, then the words), sealed in Noise
/// chunks (each with a 2-byte length and a 16-byte tag), behind the
/// message's 2-byte `[rank, kind]` header. (Until 2026-12-06 the frame
/// guard's default limit left out the chunks' lengths and the headers, and
/// was 524 380 bytes short of it.)
pub const fn largest_message() -> u64 {
    let plain = 16 + 8 * MAX_WORDS;
    let chunk = crate::net::noise::CHUNK as u64;
    2 + plain + 18 * plain.div_ceil(chunk)
}
/// The length word that marks an abort frame.
pub(crate) const ABORT: u64 = u64::MAX;

/// Decode one frame from a reader: Ok(Data) or Ok(Abort) or an error for a
/// truncated or oversized frame.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Msg> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    let len = u64::from_le_bytes(b);
    if len == ABORT {
        r.read_exact(&mut b)?;
        let n = u64::from_le_bytes(b).min(4096) as usize;
        let mut txt = vec![0u8; n];
        r.read_exact(&mut txt)?;
        return Ok(Msg::Abort(String::from_utf8_lossy(&txt).into_owned()));
    }
    if len > MAX_WORDS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} words exceeds the limit of {MAX_WORDS}"),
        ));
    }
    r.read_exact(&mut b)?;
    let tag = u64::from_le_bytes(b);
    // Decode straight into ring elements, 64 KiB at a time, growing with
    // the data actually received: a peer that announces a large frame and
    // sends little costs no more memory than it sent.
    let words = len as usize;
    let mut out = Vec::with_capacity(words.min(1 << 17));
    let mut buf = [0u8; 1 << 16];
    let mut left = words * 8;
    while left > 0 {
        let k = left.min(buf.len());
        r.read_exact(&mut buf[..k]).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated frame")
            } else {
                e
            }
        })?;
        out.extend(
            buf[..k]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
        );
        left -= k;
    }
    Ok(Msg::Data(tag, out))
}

/// Append the encoding of one frame to `out`.
pub fn encode_frame(msg: &Msg, out: &mut Vec<u8>) {
    match msg {
        Msg::Data(tag, v) => {
            out.reserve(16 + v.len() * 8);
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(&tag.to_le_bytes());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Msg::Abort(why) => {
            let t = why.as_bytes();
            let t = &t[..t.len().min(4096)];
            out.extend_from_slice(&ABORT.to_le_bytes());
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
            out.extend_from_slice(t);
        }
    }
}

/// Encode one frame to a writer.
pub fn write_frame(w: &mut impl Write, msg: &Msg) -> std::io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf);
    w.write_all(&buf)
}
