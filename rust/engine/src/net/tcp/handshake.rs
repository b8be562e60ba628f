//! The TCP transport's set-up of one link: the dialling party's greeting
//! and Noise handshake (initiator), the accepting party's check of a
//! connection (`admit`: the greeting names the expected party and, with
//! keys, the handshake proves it), and the verdicts the accepting side
//! sends in place of a handshake answer.

use super::{peer_err, set_timeouts, LinkKeys, Linked, GREET_TIMEOUT};
use crate::error::{EngineError, Result};
use crate::net::noise;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The accepting side's verdict, sent in place of a handshake answer: a
/// zero length (no handshake message is empty), then one byte. `ADMITTED`
/// is the whole answer on unencrypted links; on encrypted ones a refusal
/// tells the dialing party why, so that it blames keys only when they
/// failed, and retries when its connection was merely dropped.
const ADMITTED: u8 = 0;
const REFUSED_KEY: u8 = 1;
const REFUSED_RANK: u8 = 2;
const REFUSED_MODE: u8 = 3;
const REFUSED_JOB: u8 = 4;
/// The accepting party gave up its set-up (a refusal by its other
/// neighbour, say): a u16 length and its reason follow.
const GAVE_UP: u8 = 5;

/// A greeting's flag for a dialing party without encryption (the greeting
/// is the party's rank, with this bit set on unencrypted links), so that
/// parties that disagree on `CRYPTGPU_INSECURE` are told so.
const PLAIN: u64 = 1 << 32;

/// The first bytes of a ZMTP greeting: a peer that answers with them runs
/// the ZeroMQ transport.
pub(super) fn is_zmtp(b: &[u8]) -> bool {
    b.first() == Some(&0xff)
}

/// Why a dialing attempt failed: the connection was lost before the
/// neighbour answered (dial again), or a verdict to report.
pub(super) enum Attempt {
    Lost(String),
    Fatal(EngineError),
}

fn lost(e: impl std::fmt::Display) -> Attempt {
    Attempt::Lost(e.to_string())
}

/// Read a u16-framed answer from the accepting side: a handshake message,
/// or (length 0) its verdict byte.
fn read_answer(s: &mut TcpStream, me: usize, peer: usize) -> std::result::Result<Answer, Attempt> {
    let mut l = [0u8; 2];
    s.read_exact(&mut l).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            Attempt::Fatal(EngineError::Peer(format!(
                "party {me} got no answer from party {peer} within the timeout (its port \
                 accepted the connection)"
            )))
        }
        _ => lost(e),
    })?;
    if is_zmtp(&l) {
        return Err(Attempt::Fatal(EngineError::Peer(format!(
            "party {me}: party {peer} answered with ZeroMQ: it runs the default transport while \
             this party runs CRYPTGPU_TRANSPORT=tcp (all parties must use the same transport)"
        ))));
    }
    let n = u16::from_le_bytes(l) as usize;
    if n == 0 {
        let mut v = [0u8; 1];
        s.read_exact(&mut v).map_err(lost)?;
        if v[0] == GAVE_UP {
            s.read_exact(&mut l).map_err(lost)?;
            let mut why = vec![0u8; u16::from_le_bytes(l) as usize];
            s.read_exact(&mut why).map_err(lost)?;
            // before any handshake: whoever answers at that address may
            // have sent it, so it is shown as such, printable ASCII only
            let why: String = String::from_utf8_lossy(&why)
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .take(400)
                .collect();
            return Err(Attempt::Fatal(EngineError::Peer(format!(
                "party {me}: the party at party {peer}'s address answered that it gave up its \
                 links (not authenticated: {why})"
            ))));
        }
        return Ok(Answer::Verdict(v[0]));
    }
    let mut m = vec![0u8; n];
    s.read_exact(&mut m).map_err(lost)?;
    Ok(Answer::Message(m))
}

enum Answer {
    Message(Vec<u8>),
    Verdict(u8),
}

/// The error for a refusal the accepting party `peer` sent.
fn verdict_error(me: usize, peer: usize, v: u8, encrypted: bool) -> EngineError {
    match v {
        REFUSED_KEY => noise::refused(me, peer, &format!("party {peer} refused this party's key")),
        REFUSED_RANK => EngineError::Peer(format!(
            "party {me}: the party listening at party {peer}'s address expects another party: \
             do all parties use the same CRYPTGPU_PEERS list, in the same order, and distinct \
             ranks?"
        )),
        REFUSED_MODE if encrypted => EngineError::Peer(format!(
            "party {me}: party {peer} runs without encryption (CRYPTGPU_INSECURE=1) while this \
             party encrypts its links: all parties must agree"
        )),
        REFUSED_MODE => EngineError::Peer(format!(
            "party {me}: party {peer} encrypts its links while this party runs without \
             encryption (CRYPTGPU_INSECURE=1): all parties must agree"
        )),
        REFUSED_JOB => noise::other_job(me, peer),
        other => EngineError::Peer(format!(
            "party {me}: party {peer} sent an unknown answer ({other}): do all parties run the \
             same cryptgpu version?"
        )),
    }
}

/// The dialing side's half of one attempt: greet, then the initiator side
/// of the handshake (with keys) or wait for the admission (without).
pub(super) fn greet_and_handshake(
    s: &mut TcpStream,
    keys: Option<&LinkKeys>,
    me: usize,
    peer: usize,
) -> std::result::Result<Option<snow::TransportState>, Attempt> {
    let greeting = me as u64 | if keys.is_none() { PLAIN } else { 0 };
    s.write_all(&greeting.to_le_bytes()).map_err(lost)?;
    let Some(keys) = keys else {
        return match read_answer(s, me, peer)? {
            Answer::Verdict(ADMITTED) => Ok(None),
            Answer::Verdict(v) => Err(Attempt::Fatal(verdict_error(me, peer, v, false))),
            Answer::Message(_) => Err(Attempt::Fatal(verdict_error(me, peer, REFUSED_MODE, false))),
        };
    };
    let mut w = s.try_clone().map_err(lost)?;
    // The connection's fate outside the handshake's own errors: lost
    // (retry) or a verdict.
    let outcome: std::cell::RefCell<Option<Attempt>> = Default::default();
    let r = noise::handshake(
        keys,
        me,
        peer,
        true,
        false, // one connection per peer: a replay or a stranger fails at once
        |m| {
            w.write_all(&(m.len() as u16).to_le_bytes())
                .and_then(|_| w.write_all(m))
                .map_err(|e| {
                    *outcome.borrow_mut() = Some(lost(&e));
                    peer_err(me, peer, "handshake with", e)
                })
        },
        || match read_answer(s, me, peer) {
            Ok(Answer::Message(m)) => Ok(m),
            Ok(Answer::Verdict(v)) => {
                let e = verdict_error(me, peer, v, true);
                *outcome.borrow_mut() = Some(Attempt::Fatal(verdict_error(me, peer, v, true)));
                Err(e)
            }
            Err(a) => {
                let e = match &a {
                    Attempt::Lost(m) => EngineError::Peer(m.clone()),
                    Attempt::Fatal(e) => EngineError::Peer(e.to_string()),
                };
                *outcome.borrow_mut() = Some(a);
                Err(e)
            }
        },
    );
    match (r, outcome.into_inner()) {
        (Ok(st), _) => Ok(Some(st)),
        // a refusal may have arrived before the connection broke
        (Err(_), Some(Attempt::Lost(why))) => match read_answer(s, me, peer) {
            Ok(Answer::Verdict(v)) if v != ADMITTED => {
                Err(Attempt::Fatal(verdict_error(me, peer, v, true)))
            }
            _ => Err(Attempt::Lost(why)),
        },
        (Err(_), Some(a)) => Err(a),
        // an answer came and did not authenticate: the keys
        (Err(e), None) => Err(Attempt::Fatal(e)),
    }
}

/// The accepting side's handshake (responder). On failure, says whether
/// the stream itself failed (true) rather than the peer's key.
fn respond(
    stream: &mut TcpStream,
    keys: &LinkKeys,
    me: usize,
    peer: usize,
) -> std::result::Result<snow::TransportState, (EngineError, bool)> {
    let mut w = stream
        .try_clone()
        .map_err(|e| (peer_err(me, peer, "cannot use the link to", e), true))?;
    let io_failed = std::cell::Cell::new(false);
    noise::handshake(
        keys,
        me,
        peer,
        false,
        false,
        |m| {
            w.write_all(&(m.len() as u16).to_le_bytes())
                .and_then(|_| w.write_all(m))
                .map_err(|e| {
                    io_failed.set(true);
                    peer_err(me, peer, "handshake with", e)
                })
        },
        || {
            let mut l = [0u8; 2];
            let mut m = Vec::new();
            let r = stream.read_exact(&mut l).and_then(|_| {
                m = vec![0u8; u16::from_le_bytes(l) as usize];
                stream.read_exact(&mut m)
            });
            r.map_err(|e| {
                io_failed.set(true);
                peer_err(me, peer, "no handshake from a connection claiming to be", e)
            })?;
            Ok(m)
        },
    )
    .map_err(|e| (e, io_failed.get()))
}

/// Send refusal `v`, then let the dialing party read it: end this side and
/// read (and drop) what it sent until it closes, for at most a second. A
/// socket closed with bytes unread (the handshake message the dialing
/// party sends right after its greeting) is reset, and the dialing party,
/// whose next write or read then failed, took the refusal for a dropped
/// connection and dialled again until the timeout: refusals for another
/// peer list's order or another CRYPTGPU_INSECURE were never seen.
fn refuse(s: &mut TcpStream, v: u8) {
    refuse_with(s, &[0, 0, v]);
}

fn refuse_with(s: &mut TcpStream, verdict: &[u8]) {
    if s.write_all(verdict).is_err() {
        return;
    }
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let end = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 4096];
    while Instant::now() < end && matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// Check one accepted connection: the greeting names the previous party
/// and, with keys, the handshake proves it. Err says why it was refused;
/// the dialing party is told (a verdict) when the greeting or the key is
/// wrong, so it stops at once with the reason.
pub(super) fn admit(
    mut s: TcpStream,
    rank: usize,
    p: usize,
    keys: Option<&LinkKeys>,
) -> Result<Linked> {
    let io = |e: std::io::Error| peer_err(rank, p, "bad connection claiming to be", e);
    s.set_nonblocking(false).map_err(io)?;
    set_timeouts(&s, GREET_TIMEOUT).map_err(io)?;
    let mut b = [0u8; 8];
    s.read_exact(&mut b)
        .map_err(|e| peer_err(rank, p, "no greeting from a connection claiming to be", e))?;
    if is_zmtp(&b) {
        return Err(EngineError::Peer(format!(
            "party {rank} was greeted in ZeroMQ: a party runs the default transport while this \
             one runs CRYPTGPU_TRANSPORT=tcp (all parties must use the same transport)"
        )));
    }
    let greeting = u64::from_le_bytes(b);
    let plain = greeting & PLAIN != 0;
    if greeting & !PLAIN != p as u64 {
        refuse(&mut s, REFUSED_RANK);
        return Err(EngineError::Peer(format!(
            "party {rank} expected party {p} and was greeted as {}: do all parties list the \
             parties in the same order in CRYPTGPU_PEERS?",
            greeting & !PLAIN
        )));
    }
    if plain != keys.is_none() {
        refuse(&mut s, REFUSED_MODE);
        return Err(EngineError::Peer(format!(
            "party {rank}: party {p} runs {} encryption while this party runs {}: all parties \
             must agree on CRYPTGPU_INSECURE",
            if plain { "without" } else { "with" },
            if plain { "with it" } else { "without it" },
        )));
    }
    let Some(k) = keys else {
        s.write_all(&[0, 0, ADMITTED]).map_err(io)?;
        return Ok((s, None));
    };
    match respond(&mut s, k, rank, p) {
        Ok(t) => Ok((s, Some(t))),
        Err((e, stream_failed)) => {
            if !stream_failed {
                let v = if noise::is_other_job(&e) {
                    REFUSED_JOB
                } else {
                    REFUSED_KEY
                };
                refuse(&mut s, v);
            }
            Err(e)
        }
    }
}

/// Answer a connection that reaches a party no longer accepting: its link
/// to the previous party `p` is up (`why` None), or it gave up its set-up
/// for `why`. A dialling party whose greeting names another rank (a peer
/// list in another order) or the other encryption setting is refused with
/// that reason, and the previous party is told why this one gave up;
/// anything else is dropped. True when it was the previous party, told.
pub(super) fn answer_latecomer(
    mut s: TcpStream,
    p: usize,
    encrypted: bool,
    why: Option<&str>,
) -> bool {
    let mut b = [0u8; 8];
    let greeted = s.set_nonblocking(false).is_ok()
        && set_timeouts(&s, Duration::from_secs(1)).is_ok()
        && s.read_exact(&mut b).is_ok()
        && !is_zmtp(&b);
    let greeting = u64::from_le_bytes(b);
    if !greeted {
        false
    } else if greeting & !PLAIN != p as u64 {
        refuse(&mut s, REFUSED_RANK);
        false
    } else if (greeting & PLAIN != 0) == encrypted {
        refuse(&mut s, REFUSED_MODE);
        true
    } else if let Some(why) = why {
        let why = &why.as_bytes()[..why.len().min(400)];
        let mut v = vec![0, 0, GAVE_UP];
        v.extend_from_slice(&(why.len() as u16).to_le_bytes());
        v.extend_from_slice(why);
        refuse_with(&mut s, &v);
        true
    } else {
        false
    }
}
