//! A ZMTP 3 stream as the frame guard (`guard.rs`) reads and forwards it:
//! the 64-byte greeting, then per frame a flags byte, a 1- or 8-byte
//! length and the body. The guard checks every length against its limit
//! and forwards the stream with each large message frame split into
//! frames that grow with the bytes that arrived: the `zeromq` crate's
//! decoder reserves the whole length a frame header announces, so one
//! header of 16 GiB (the protocol's limit) on a connection that proved a
//! key with a replayed identity tag made a party reserve 16 GiB per
//! connection, or abort, before one byte of the body came (a user probe).

/// Bytes of the ZMTP greeting.
pub(crate) const GREETING: usize = 64;

/// What a frame costs the `zeromq` crate's decoder beyond its bytes (its
/// buffer and list entry): charged per frame, so that a multipart message
/// of empty frames is bounded too.
const FRAME_COST: u64 = 64;

/// Slack over the frame limit for a whole message (its envelope frames
/// beside the one payload frame a party sends).
const MESSAGE_SLACK: u64 = 4096;

/// The largest command frame forwarded (commands are not split; a party's
/// READY and PING are a few hundred bytes).
pub(crate) const MAX_COMMAND: u64 = 64 * 1024;

/// Message frames up to this length are forwarded as they came; a longer
/// one is forwarded as frames of at most this length, then of as many
/// bytes as the frame delivered so far (doubling), at most `SPLIT_MAX`:
/// the decoder behind the guard reserves at most `SPLIT_MAX` (plus its
/// read chunk) beyond the bytes the connection delivered.
pub(crate) const SPLIT_MIN: u64 = 64 * 1024;
pub(crate) const SPLIT_MAX: u64 = 4 << 20;

/// Where the parser is in one connection's stream, whether the frame being
/// read has the MORE flag, and what the message so far costs. The `zeromq`
/// crate gathers a multipart message's frames until the last one, with no
/// bound: a stranger sending empty MORE frames without end grew a party by
/// gigabytes (35x what it sent) until then.
#[derive(Clone, Copy)]
pub(crate) struct Zmtp {
    state: State,
    more: bool,
    message: u64,
}

impl Zmtp {
    pub(crate) fn new() -> Self {
        Zmtp {
            state: State::Greeting(GREETING),
            more: false,
            message: 0,
        }
    }
}

#[derive(Clone, Copy)]
enum State {
    Greeting(usize),
    Flags,
    Len {
        flags: u8,
        got: usize,
        buf: [u8; 8],
    },
    /// A frame forwarded as it came: bytes left.
    Body(u64),
    /// A large frame forwarded in parts: bytes left of the frame, bytes of
    /// it forwarded so far, bytes left of the current part (0: the next
    /// part's header is due), and the frame's own MORE flag (its last part
    /// carries it).
    Split {
        left: u64,
        done: u64,
        part: u64,
        more: bool,
    },
}

/// What to forward for a chunk of the stream: a run of its bytes as they
/// came, or a frame header (of the guard's making, or one received and
/// held back until whole).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Input(usize, usize),
    Header { len: u8, bytes: [u8; 9] },
}

impl Piece {
    fn header(head: &[u8]) -> Piece {
        let mut bytes = [0u8; 9];
        bytes[..head.len()].copy_from_slice(head);
        Piece::Header {
            len: head.len() as u8,
            bytes,
        }
    }
}

/// Check `bytes`, the next part of the stream, and say what to forward for
/// them through `out`. Returns false when a frame announces more than
/// `max` bytes (a command more than `MAX_COMMAND`), or a multipart message
/// costs more than `max` (plus slack) in all, each frame charged
/// FRAME_COST; nothing of the offending frame's header is forwarded.
pub(crate) fn advance(z: &mut Zmtp, bytes: &[u8], max: u64, mut out: impl FnMut(Piece)) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match z.state {
            State::Greeting(left) => {
                let take = left.min(bytes.len() - i);
                out(Piece::Input(i, i + take));
                i += take;
                z.state = if left == take {
                    State::Flags
                } else {
                    State::Greeting(left - take)
                };
            }
            State::Flags => {
                // MORE (bit 0) on a message frame; a command (bit 2) is one frame
                z.more = bytes[i] & 0b101 == 0b001;
                z.state = State::Len {
                    flags: bytes[i],
                    got: 0,
                    buf: [0; 8],
                };
                i += 1;
            }
            State::Len {
                flags,
                mut got,
                mut buf,
            } => {
                let need = if flags & 0b10 != 0 { 8 } else { 1 };
                while got < need && i < bytes.len() {
                    buf[got] = bytes[i];
                    got += 1;
                    i += 1;
                }
                if got < need {
                    z.state = State::Len { flags, got, buf };
                    continue;
                }
                let len = if need == 8 {
                    u64::from_be_bytes(buf)
                } else {
                    u64::from(buf[0])
                };
                let command = flags & 0b100 != 0;
                if len > max || (command && len > MAX_COMMAND) {
                    return false;
                }
                z.message = z.message.saturating_add(len.saturating_add(FRAME_COST));
                if z.message > max.saturating_add(MESSAGE_SLACK) {
                    return false;
                }
                if !command && len > SPLIT_MIN {
                    z.state = State::Split {
                        left: len,
                        done: 0,
                        part: 0,
                        more: flags & 1 != 0,
                    };
                    continue;
                }
                let mut head = [0u8; 9];
                head[0] = flags;
                head[1..1 + need].copy_from_slice(&buf[..need]);
                out(Piece::header(&head[..1 + need]));
                if len == 0 {
                    end_frame(z);
                } else {
                    z.state = State::Body(len);
                }
            }
            State::Body(left) => {
                let take = left.min((bytes.len() - i) as u64);
                out(Piece::Input(i, i + take as usize));
                i += take as usize;
                if left == take {
                    end_frame(z);
                } else {
                    z.state = State::Body(left - take);
                }
            }
            State::Split {
                left,
                done,
                mut part,
                more,
            } => {
                // the next part's header goes out with its first byte, so
                // what it announces is never more than the frame delivered
                // so far (at least SPLIT_MIN, at most SPLIT_MAX)
                if part == 0 {
                    part = left.min(done.clamp(SPLIT_MIN, SPLIT_MAX));
                    let last = part == left;
                    let mut head = [0u8; 9];
                    head[0] = 0b10 | u8::from(!last || more);
                    head[1..].copy_from_slice(&part.to_be_bytes());
                    out(Piece::header(&head));
                }
                let take = part.min((bytes.len() - i) as u64);
                out(Piece::Input(i, i + take as usize));
                i += take as usize;
                if left == take {
                    end_frame(z);
                } else {
                    z.state = State::Split {
                        left: left - take,
                        done: done + take,
                        part: part - take,
                        more,
                    };
                }
            }
        }
    }
    true
}

/// A frame has been read: the next flags byte follows; the message's cost
/// starts again after its last frame.
fn end_frame(z: &mut Zmtp) {
    z.state = State::Flags;
    if !z.more {
        z.message = 0;
    }
}

/// Feed a ZMTP stream, split into `chunks` as it might arrive, through the
/// frame-length checker: false when a frame announces more than `max`
/// bytes. The entry point of the fuzz target and of tests.
pub fn stream_within_limit<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, max: u64) -> bool {
    let mut z = Zmtp::new();
    chunks.into_iter().all(|c| advance(&mut z, c, max, |_| {}))
}

/// What the guard forwards for a stream split into `chunks` (None when it
/// is cut): the fuzz target's and the tests' view of the re-framing.
pub fn forwarded<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, max: u64) -> Option<Vec<u8>> {
    let mut z = Zmtp::new();
    let mut out = Vec::new();
    for c in chunks {
        let mut pieces = Vec::new();
        if !advance(&mut z, c, max, |p| pieces.push(p)) {
            return None;
        }
        write_pieces(c, &pieces, &mut out);
    }
    Some(out)
}

/// Append what `pieces` say to forward of `input` to `out`.
pub(crate) fn write_pieces(input: &[u8], pieces: &[Piece], out: &mut Vec<u8>) {
    for p in pieces {
        match p {
            Piece::Input(a, b) => out.extend_from_slice(&input[*a..*b]),
            Piece::Header { len, bytes } => out.extend_from_slice(&bytes[..usize::from(*len)]),
        }
    }
}

/// The one run of `input` that `pieces` forward when they are nothing
/// else (the bulk of a large frame: written without a copy).
pub(crate) fn only_input<'a>(input: &'a [u8], pieces: &[Piece]) -> Option<&'a [u8]> {
    match pieces {
        [Piece::Input(a, b)] => Some(&input[*a..*b]),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ZMTP stream: a greeting, then each (flags, body) as a frame (a
    /// long frame when flags say so). Also the guard's tests' input.
    pub(crate) fn frames(parts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut v = vec![0xffu8; GREETING];
        for (flags, body) in parts {
            if flags & 0b10 != 0 {
                v.push(*flags);
                v.extend_from_slice(&(body.len() as u64).to_be_bytes());
            } else {
                v.push(*flags);
                v.push(body.len() as u8);
            }
            v.extend_from_slice(body);
        }
        v
    }

    /// The messages of a ZMTP stream (after the greeting), each a list of
    /// frame bodies (a command is a message of its own); and the most any
    /// header announced beyond what the decoder behind the guard may
    /// reserve ahead of the data: SPLIT_MIN, or as many bytes as its
    /// message delivered before it, at most SPLIT_MAX.
    fn messages(s: &[u8]) -> (Vec<Vec<Vec<u8>>>, u64) {
        let (mut out, mut cur, mut i) = (Vec::new(), Vec::new(), GREETING);
        let (mut got, mut excess) = (0u64, 0u64);
        while i < s.len() {
            let flags = s[i];
            let (len, h) = if flags & 0b10 != 0 {
                (u64::from_be_bytes(s[i + 1..i + 9].try_into().unwrap()), 9)
            } else {
                (u64::from(s[i + 1]), 2)
            };
            excess = excess.max(len.saturating_sub(SPLIT_MIN.max(got.min(SPLIT_MAX))));
            cur.push(s[i + h..i + h + len as usize].to_vec());
            got += len;
            i += h + len as usize;
            if flags & 0b100 != 0 || flags & 1 == 0 {
                out.push(std::mem::take(&mut cur));
                got = 0;
            }
        }
        (out, excess)
    }

    #[test]
    fn lengths_are_checked_across_any_split_of_the_stream() {
        let ok = frames(&[(0, b"hello"), (0b10, &[7u8; 300]), (0b100, b"")]);
        for cut in 0..ok.len() {
            let mut s = Zmtp::new();
            assert!(
                advance(&mut s, &ok[..cut], 1000, |_| {})
                    && advance(&mut s, &ok[cut..], 1000, |_| {})
            );
            assert!(matches!(s.state, State::Flags));
            // forwarded unchanged: every frame is small
            assert_eq!(forwarded([&ok[..cut], &ok[cut..]], 1000).unwrap(), ok);
        }
        let mut s = Zmtp::new();
        assert!(
            !advance(&mut s, &ok, 299, |_| {}),
            "a 300-byte frame over a 299 limit"
        );
        // A forged 2^62-byte header is refused before any body arrives.
        let mut evil = vec![0xffu8; GREETING];
        evil.push(0b10);
        evil.extend_from_slice(&(1u64 << 62).to_be_bytes());
        assert!(!stream_within_limit([&evil[..]], 1 << 30));
        // A command is never split, so it may not be large.
        let big_command = frames(&[(0b110, &vec![0u8; MAX_COMMAND as usize + 1])]);
        assert!(!stream_within_limit([&big_command[..]], 1 << 30));
    }

    /// A multipart message of endless empty MORE frames (which the `zeromq`
    /// crate gathers without bound) is cut once it costs more than the
    /// limit; as many frames in separate messages are not.
    #[test]
    fn a_multipart_message_is_bounded_in_all() {
        let limit = 64 * 1024;
        let empty_more: Vec<(u8, &[u8])> = vec![(0b01, b""); 2000];
        assert!(!stream_within_limit([&frames(&empty_more)[..]], limit));
        let separate: Vec<(u8, &[u8])> = vec![(0b00, b"x"); 2000];
        assert!(stream_within_limit([&frames(&separate)[..]], limit));
        // a message of several frames under the limit passes, in any split
        let ok = frames(&[(0b01, b"id"), (0b01, b""), (0b10, &[1u8; 60_000])]);
        for cut in 0..ok.len() {
            assert!(stream_within_limit([&ok[..cut], &ok[cut..]], limit));
        }
        // 3 frames of 40 KB in one message: each under the limit, not in all
        let big = [0u8; 40_000];
        let three = frames(&[(0b11, &big[..]), (0b11, &big[..]), (0b10, &big[..])]);
        assert!(!stream_within_limit([&three[..]], limit));
    }

    /// A large frame is forwarded as parts whose headers never announce
    /// more than the bytes its message delivered so far (at least
    /// SPLIT_MIN, at most SPLIT_MAX), however the stream arrives; joined,
    /// the parts are the frame, and the frames around it are unchanged.
    /// The `zeromq` crate reserved a whole 16 GiB frame at its header.
    #[test]
    fn a_large_frame_is_forwarded_in_parts_that_grow_with_the_data() {
        let big: Vec<u8> = (0..(20u64 << 20) + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let s = frames(&[
            (0b100, b"\x05READY"),
            (0b00, b"small"),
            (0b11, &big[..]), // MORE: the message goes on
            (0b00, b"tail"),
            (0b10, &big[..70_000]), // just above SPLIT_MIN
        ]);
        for step in [1usize << 16, 4093, 1 << 20] {
            let out = forwarded(s.chunks(step), 1 << 40).unwrap();
            let (msgs, excess) = messages(&out);
            assert_eq!(excess, 0, "announced ahead of the data");
            assert_eq!(msgs.len(), 4, "READY, small, big + tail, the last");
            assert_eq!(msgs[1], vec![b"small".to_vec()]);
            let m = &msgs[2];
            assert_eq!(m.last().unwrap(), b"tail");
            assert_eq!(m[..m.len() - 1].concat(), big);
            let sizes: Vec<u64> = m[..m.len() - 1].iter().map(|p| p.len() as u64).collect();
            assert_eq!(sizes[..4], [64 << 10, 64 << 10, 128 << 10, 256 << 10]);
            assert!(sizes.iter().all(|&n| n <= SPLIT_MAX));
            assert_eq!(msgs[3].len(), 2);
            assert_eq!(msgs[3].concat(), big[..70_000]);
        }
        // a large frame's header with nothing after it: nothing of it yet
        let head = frames(&[(0b10, &[])]);
        let mut announce = head[..GREETING + 1].to_vec();
        announce.extend_from_slice(&(16u64 << 30).to_be_bytes());
        assert_eq!(
            forwarded([&announce[..]], 1 << 40).unwrap(),
            head[..GREETING]
        );
        announce.extend_from_slice(&[1, 2, 3]);
        let out = forwarded([&announce[..]], 1 << 40).unwrap();
        assert_eq!(out[GREETING..GREETING + 9], [0b11, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(out[GREETING + 9..], [1, 2, 3]);
    }

    fn frame_list() -> impl Strategy<Value = Vec<(u8, usize)>> {
        proptest::collection::vec((any::<u8>(), 0usize..200_000), 1..6)
    }

    proptest! {
        // The verdict and the bytes forwarded do not depend on how the
        // stream arrives, and joined back the messages are the same.
        #![proptest_config(ProptestConfig {
            cases: 64,
            rng_seed: proptest::test_runner::RngSeed::Fixed(11),
            ..ProptestConfig::default()
        })]
        #[test]
        fn forwarding_keeps_the_messages(fs in frame_list(), cut in any::<prop::sample::Index>()) {
            let bodies: Vec<Vec<u8>> = fs.iter().map(|&(_, n)| vec![3u8; n]).collect();
            // a short header cannot hold a length above 255
            let parts: Vec<(u8, &[u8])> = fs
                .iter()
                .zip(&bodies)
                .map(|(&(f, n), b)| (if n > 255 { f & 0b111 | 0b10 } else { f & 0b111 }, &b[..]))
                .collect();
            let s = frames(&parts);
            let c = cut.index(s.len() + 1);
            let whole = forwarded([&s[..]], 1 << 30);
            prop_assert_eq!(&whole, &forwarded([&s[..c], &s[c..]], 1 << 30));
            prop_assert_eq!(whole.is_some(), stream_within_limit([&s[..]], 1 << 30));
            if let Some(out) = whole {
                let (got, excess) = messages(&out);
                prop_assert_eq!(excess, 0);
                let (want, _) = messages(&s);
                prop_assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    prop_assert_eq!(a.concat(), b.concat());
                }
            }
        }
    }
}
