//! Encrypted, mutually authenticated links (issue 7): a Noise_KK handshake
//! (X25519, ChaCha20-Poly1305, BLAKE2s; the `snow` crate) in which both ends
//! must already hold the other's static public key, so a party with a wrong
//! or missing key is refused at connect. After it, every frame is sealed in
//! chunks of at most `CHUNK` bytes, each with a 2-byte length. Both
//! transports (TCP and ZeroMQ) use these functions; they differ only in how
//! handshake messages and sealed frames travel.

use crate::error::{EngineError, Result};
use std::io::{Error as IoError, ErrorKind};

const NOISE: &str = "Noise_KK_25519_ChaChaPoly_BLAKE2s";
/// Largest plaintext per Noise message (65 535 minus the 16-byte tag).
pub const CHUNK: usize = 65535 - 16;

/// This party's static private key, the three parties' public keys and
/// the job's digest (`job_digest`), which each handshake exchanges sealed:
/// two jobs run with the same keys and different names cannot be spliced
/// into one session.
#[derive(Clone)]
pub struct LinkKeys {
    pub private: [u8; 32],
    pub publics: [[u8; 32]; 3],
    pub job: [u8; 32],
}

/// The digest naming one job: BLAKE2s over its name (`CRYPTGPU_JOB`,
/// empty by default), which the three parties share. Until 2026-12-05
/// nothing in the handshake named the job, so a network that rerouted the
/// links of two jobs run at once with the same keys mixed them into two
/// sessions that finished with wrong results and exit code 0 (a user
/// probe); jobs that share keys now stay apart when their names differ.
/// Not the peer list: behind proxies or NAT each party may reach the
/// others at addresses of its own.
pub fn job_digest(name: &str) -> Result<[u8; 32]> {
    use snow::params::HashChoice;
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let mut h = DefaultResolver
        .resolve_hash(&HashChoice::Blake2s)
        .ok_or_else(|| EngineError::Internal("no BLAKE2s implementation".into()))?;
    h.reset();
    h.input(b"cryptgpu job v1\0");
    h.input(name.as_bytes());
    let mut out = [0u8; 32];
    h.result(&mut out);
    Ok(out)
}

/// What marks a handshake that failed on the job (not on the keys).
const OTHER_JOB: &str = "belongs to another job";

/// Whether a handshake failed because the peer named another job (made
/// by `other_job`): the TCP responder tells the dialer so.
pub fn is_other_job(e: &EngineError) -> bool {
    matches!(e, EngineError::Peer(m) if m.contains(OTHER_JOB))
}

/// The error for a peer whose handshake carries no job digest (a version
/// from before 2026-12-05).
pub fn other_version(me: usize, peer: usize) -> EngineError {
    EngineError::Peer(format!(
        "party {me}: party {peer}'s handshake names no job: it runs another cryptgpu version \
         (all parties need the same version)"
    ))
}

/// The error for a peer whose handshake names another job.
pub fn other_job(me: usize, peer: usize) -> EngineError {
    EngineError::Peer(format!(
        "party {me}: party {peer} holds this job's keys but {OTHER_JOB} (its CRYPTGPU_JOB \
         differs from this party's): give the three parties of one job the same CRYPTGPU_JOB, \
         and each job its own keys or its own name (two jobs sharing keys and name could be \
         mixed by the network)"
    ))
}

fn params() -> Result<snow::params::NoiseParams> {
    NOISE
        .parse()
        .map_err(|_| EngineError::Internal("noise pattern".into()))
}

/// A fresh X25519 key pair (private, public) for `LinkKeys`.
pub fn generate_keypair() -> Result<([u8; 32], [u8; 32])> {
    let kp = snow::Builder::new(params()?)
        .generate_keypair()
        .map_err(|e| EngineError::Internal(format!("key generation failed: {e}")))?;
    let mut private = [0u8; 32];
    let mut public = [0u8; 32];
    private.copy_from_slice(&kp.private);
    public.copy_from_slice(&kp.public);
    Ok((private, public))
}

/// Bytes as lowercase hex digits (keys, identity tags).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 16-byte tag that only the holder of party `from`'s private key or of
/// party `to`'s can make (a BLAKE2s HMAC keyed by their static X25519
/// secret, over the two ranks, `minute` and a `nonce` that names one
/// connection): party `from` puts it in the
/// socket identity of its connection to `to`, and `to`'s frame guard
/// (net/guard.rs) checks it before the connection may hold a slot for
/// good. `keys` are party `me`'s, who is `from` or `to`. None otherwise, or
/// if the shared secret is degenerate (a low-order public key).
pub fn identity_tag(
    keys: &LinkKeys,
    me: usize,
    from: usize,
    to: usize,
    minute: u64,
    nonce: &[u8],
) -> Option<[u8; 16]> {
    let other = match me {
        m if m == from && from != to => to,
        m if m == to && from != to => from,
        _ => return None,
    };
    identity_tag_under(keys, keys.publics.get(other)?, from, to, minute, nonce)
}

/// [`identity_tag`] with the secret `keys.private` shares with `public`,
/// whoever's key that is: an identity that fails its check is tried under
/// the other keys a party holds, so that a list in another order, or a
/// clock off by more than the skew, is named as such in an error
/// (`identity::why_unproved`).
pub(crate) fn identity_tag_under(
    keys: &LinkKeys,
    public: &[u8; 32],
    from: usize,
    to: usize,
    minute: u64,
    nonce: &[u8],
) -> Option<[u8; 16]> {
    use snow::params::{DHChoice, HashChoice};
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let mut dh = DefaultResolver.resolve_dh(&DHChoice::Curve25519)?;
    dh.set(&keys.private);
    let mut secret = [0u8; 32];
    dh.dh(public, &mut secret).ok()?;
    if secret == [0u8; 32] {
        return None;
    }
    let mut data = b"cryptgpu frame guard identity v2".to_vec();
    data.extend_from_slice(&[from as u8, to as u8]);
    data.extend_from_slice(&minute.to_be_bytes());
    data.extend_from_slice(nonce);
    let mut h = DefaultResolver.resolve_hash(&HashChoice::Blake2s)?;
    let mut out = [0u8; 32];
    h.hmac(&secret, &data, &mut out);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&out[..16]);
    Some(tag)
}

/// Whether `keys.private` is the private half of `keys.publics[me]`: a
/// party given another party's key file (or a stale one) would otherwise
/// learn it only when its neighbours' timeout runs out.
pub fn check_own_key(keys: &LinkKeys, me: usize) -> Result<()> {
    use snow::params::DHChoice;
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .ok_or_else(|| EngineError::Internal("no X25519 implementation".into()))?;
    dh.set(&keys.private);
    let mine = keys
        .publics
        .get(me)
        .ok_or_else(|| EngineError::Invalid(format!("rank {me} has no public key in the list")))?;
    if dh.pubkey() != &mine[..] {
        let other = (0..3).find(|&r| dh.pubkey() == &keys.publics[r][..]);
        let hint = match other {
            Some(r) => format!("it is party {r}'s key"),
            None => "it matches none of the three public keys".to_string(),
        };
        return Err(EngineError::Invalid(format!(
            "party {me}'s private key does not belong to public key {me} of the list ({hint}): \
             give each party its own partyN.key and every party the same pubkeys"
        )));
    }
    // a list naming one key twice, or a key no exchange can use (all zero, a
    // low-order point): refused here, where the handshake would fail only
    // at the timeout, blaming encryption settings (a user probe)
    for i in 0..3 {
        for j in i + 1..3 {
            if keys.publics[i] == keys.publics[j] {
                return Err(EngineError::Invalid(format!(
                    "public keys {i} and {j} of the list are the same key: each party needs its \
                     own key pair (python -m cryptgpu.keys makes three)"
                )));
            }
        }
    }
    for (r, public) in keys.publics.iter().enumerate() {
        let mut secret = [0u8; 32];
        if r != me && (dh.dh(public, &mut secret).is_err() || secret == [0u8; 32]) {
            return Err(EngineError::Invalid(format!(
                "public key {r} of the list is not a usable X25519 key (all zero or a low-order \
                 point): copy the pubkeys that python -m cryptgpu.keys wrote"
            )));
        }
    }
    Ok(())
}

/// The error for a refused handshake, naming both parties.
pub fn refused(me: usize, peer: usize, what: &str) -> EngineError {
    EngineError::Peer(format!(
        "party {me}: encrypted link to party {peer} refused ({what}): the two parties do not hold \
         each other's public keys (wrong or missing key), or the parties' CRYPTGPU_PEERS lists \
         differ in order (a party then reaches another than it expects), or a message was \
         altered on the way"
    ))
}

/// Bytes of a handshake attempt's nonce.
const ATTEMPT: usize = 8;
/// Bytes of the first message's payload: the nonce and the job's digest.
const FIRST: usize = ATTEMPT + 32;
/// Answered first messages a responder keeps until one is confirmed.
const CANDIDATES: usize = 32;

/// Run the Noise_KK handshake over `send`/`recv`, which carry one
/// handshake message each. The initiator speaks first.
///
/// KK's first message carries nothing fresh from the responder, so a
/// recording of it from an earlier session (same keys) reads as genuine.
/// Three things keep such a replay from spoiling the start of a session:
/// the initiator sends a random attempt nonce as its first message's
/// payload (authenticated: a recording cannot carry a new one), the
/// responder's answer repeats it in front, and the initiator reads only an
/// answer that repeats its own (the answer to a replay is skipped); the
/// initiator then confirms its key with a first transport message (an
/// empty sealed one, which only the holder of its fresh ephemeral secret
/// can make); and the responder takes the handshake as done only at that
/// confirmation, answering until then each first message that reads and
/// names an attempt it has not answered yet (`patient`: a link that
/// multiplexes strangers' and the real party's messages, ZeroMQ's), keeping
/// up to `CANDIDATES` of them: a flood of one recording is one candidate.
/// Without `patient` (one TCP connection per peer) the first message must
/// read and the next one must confirm.
pub fn handshake(
    keys: &LinkKeys,
    me: usize,
    peer: usize,
    initiator: bool,
    patient: bool,
    send: impl FnMut(&[u8]) -> Result<()>,
    mut recv: impl FnMut() -> Result<Vec<u8>>,
) -> Result<snow::TransportState> {
    handshake_retrying(keys, me, peer, initiator, patient, send, || {
        recv().map(Some)
    })
}

/// [`handshake`] over a link that may lose messages (a ZeroMQ DEALER whose
/// connection reached a neighbour's previous session, which then closed):
/// `recv` gives `None` when nothing came for a while, and the initiator
/// then starts a new attempt (a fresh first message and nonce), keeping
/// the last `CANDIDATES` attempts open, so an answer to any of them
/// completes the handshake. The responder already answers each new
/// attempt; to it `None` means nothing.
pub fn handshake_retrying(
    keys: &LinkKeys,
    me: usize,
    peer: usize,
    initiator: bool,
    patient: bool,
    mut send: impl FnMut(&[u8]) -> Result<()>,
    mut recv: impl FnMut() -> Result<Option<Vec<u8>>>,
) -> Result<snow::TransportState> {
    let fail = |what: &str| refused(me, peer, what);
    let build = || -> Result<snow::HandshakeState> {
        let b = snow::Builder::new(params()?)
            .local_private_key(&keys.private)
            .remote_public_key(&keys.publics[peer]);
        if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
        .map_err(|e| EngineError::Internal(format!("noise setup: {e}")))
    };
    let mut msg = vec![0u8; 1024];
    let mut payload = vec![0u8; 1024];
    if initiator {
        let mut attempts: Vec<([u8; ATTEMPT], snow::HandshakeState)> = Vec::new();
        let mut attempt = |attempts: &mut Vec<_>, msg: &mut [u8]| -> Result<()> {
            let mut hs = build()?;
            let nonce = attempt_nonce()?;
            let mut first = nonce.to_vec();
            first.extend_from_slice(&keys.job);
            let n = hs
                .write_message(&first, msg)
                .map_err(|_| fail("first message"))?;
            send(&msg[..n])?;
            keep_last(attempts, (nonce, hs), CANDIDATES);
            Ok(())
        };
        attempt(&mut attempts, &mut msg)?;
        let hs = loop {
            let Some(m) = recv()? else {
                attempt(&mut attempts, &mut msg)?;
                continue;
            };
            // an answer to another first message (a replay's) is skipped
            let Some(i) = (m.len() >= ATTEMPT)
                .then(|| attempts.iter().position(|(a, _)| m[..ATTEMPT] == a[..]))
                .flatten()
            else {
                continue;
            };
            let mut hs = attempts.swap_remove(i).1;
            let n = hs
                .read_message(&m[ATTEMPT..], &mut payload)
                .map_err(|_| fail("bad answer"))?;
            if n != keys.job.len() {
                return Err(other_version(me, peer));
            }
            if payload[..n] != keys.job[..] {
                return Err(other_job(me, peer));
            }
            break hs;
        };
        let mut st = hs
            .into_transport_mode()
            .map_err(|_| fail("incomplete handshake"))?;
        let n = st
            .write_message(&[], &mut msg)
            .map_err(|_| fail("confirmation"))?;
        send(&msg[..n])?;
        return Ok(st);
    }
    let mut candidates: Vec<([u8; ATTEMPT], snow::TransportState)> = Vec::new();
    loop {
        let Some(m) = recv()? else {
            continue;
        };
        // a confirmation of one of the answered first messages?
        if let Some(i) = candidates
            .iter_mut()
            .position(|(_, st)| st.read_message(&m, &mut payload).is_ok())
        {
            return Ok(candidates.swap_remove(i).1);
        }
        if !candidates.is_empty() && !patient {
            return Err(fail("no confirmation"));
        }
        // a first message: answered (repeating its attempt nonce) if it
        // reads and names an attempt not answered yet
        let mut hs = build()?;
        let nonce: Option<[u8; ATTEMPT]> = match hs.read_message(&m, &mut payload) {
            Ok(FIRST) if payload[ATTEMPT..FIRST] != keys.job[..] => {
                // read under this job's keys, so sent by a key holder: a
                // party of another job run with the same keys
                return Err(other_job(me, peer));
            }
            Ok(FIRST) => payload[..ATTEMPT].try_into().ok(),
            // read under this job's keys: a key holder of an older version
            Ok(ATTEMPT) => return Err(other_version(me, peer)),
            _ => None,
        };
        match nonce {
            Some(nonce) if candidates.iter().any(|(a, _)| *a == nonce) => {} // a repeat
            Some(nonce) => {
                let n = hs
                    .write_message(&keys.job, &mut msg)
                    .map_err(|_| fail("answer"))?;
                let mut out = nonce.to_vec();
                out.extend_from_slice(&msg[..n]);
                send(&out)?;
                let st = hs
                    .into_transport_mode()
                    .map_err(|_| fail("incomplete handshake"))?;
                keep_last(&mut candidates, (nonce, st), CANDIDATES);
            }
            None if !patient => return Err(fail("bad first message")),
            None => {} // a stranger's, or garbage: wait for the real one
        }
    }
}

/// Push `item`, dropping the oldest entry once `v` holds `cap`: the open
/// attempts or answered candidates a handshake keeps.
pub(crate) fn keep_last<T>(v: &mut Vec<T>, item: T, cap: usize) {
    if v.len() == cap {
        v.remove(0);
    }
    v.push(item);
}

/// A random nonce naming one handshake attempt.
fn attempt_nonce() -> Result<[u8; ATTEMPT]> {
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let mut rng = DefaultResolver
        .resolve_rng()
        .ok_or_else(|| EngineError::Internal("no random number generator".into()))?;
    let mut out = [0u8; ATTEMPT];
    rng.fill_bytes(&mut out);
    Ok(out)
}

/// Seal `bytes` as a sequence of (u16 length, ciphertext) chunks.
pub fn seal(noise: &mut snow::TransportState, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    seal_into(noise, bytes, &mut out)?;
    Ok(out)
}

/// `seal`, appending to `out` (after a header the caller already wrote).
pub fn seal_into(
    noise: &mut snow::TransportState,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    out.reserve(bytes.len() + bytes.len() / CHUNK * 18 + 18);
    let mut ct = vec![0u8; 65535];
    // An empty frame still gets one (authenticated) chunk.
    let mut chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for chunk in chunks {
        let n = noise
            .write_message(chunk, &mut ct)
            .map_err(|e| IoError::other(format!("encryption failed: {e}")))?;
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&ct[..n]);
    }
    Ok(())
}

/// Open one chunk's ciphertext, appending the plaintext to `out`.
pub fn open_chunk(
    noise: &mut snow::TransportState,
    ct: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let at = out.len();
    out.resize(at + ct.len(), 0);
    let n = noise.read_message(ct, &mut out[at..]).map_err(|_| {
        out.truncate(at);
        IoError::new(ErrorKind::InvalidData, "a frame failed authentication")
    })?;
    out.truncate(at + n);
    Ok(())
}

/// Open a whole sealed buffer made by `seal`; a truncated chunk or a chunk
/// that fails authentication is an error.
pub fn open(noise: &mut snow::TransportState, sealed: &[u8]) -> std::io::Result<Vec<u8>> {
    open_parts(noise, &[sealed])
}

/// `open` for a sealed buffer that arrived in parts (a large ZeroMQ frame
/// that the frame guard forwarded in several): each chunk is opened where
/// it lies, one that straddles two parts from a copy.
pub fn open_parts<P: AsRef<[u8]>>(
    noise: &mut snow::TransportState,
    parts: &[P],
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.as_ref().len()).sum());
    let mut at = Cursor {
        parts,
        i: 0,
        off: 0,
    };
    let mut scratch = Vec::new();
    let truncated = || IoError::new(ErrorKind::UnexpectedEof, "truncated chunk");
    while !at.done() {
        let l = at.take(2, &mut scratch).ok_or_else(truncated)?;
        let n = u16::from_le_bytes([l[0], l[1]]) as usize;
        let ct = at.take(n, &mut scratch).ok_or_else(truncated)?;
        open_chunk(noise, ct, &mut out)?;
    }
    Ok(out)
}

/// A place in a buffer that arrived in parts.
struct Cursor<'a, P> {
    parts: &'a [P],
    i: usize,
    off: usize,
}

impl<'a, P: AsRef<[u8]>> Cursor<'a, P> {
    /// Past the last byte (empty parts skipped).
    fn done(&mut self) -> bool {
        while self.i < self.parts.len() && self.off == self.parts[self.i].as_ref().len() {
            (self.i, self.off) = (self.i + 1, 0);
        }
        self.i == self.parts.len()
    }

    /// The next `n` bytes: in place when they lie in one part, else copied
    /// into `scratch`; None when fewer are left.
    fn take<'s>(&mut self, n: usize, scratch: &'s mut Vec<u8>) -> Option<&'s [u8]>
    where
        'a: 's,
    {
        if self.done() && n > 0 {
            return None;
        }
        let p = self.parts.get(self.i).map_or(&[][..], |p| p.as_ref());
        if p.len() - self.off >= n {
            self.off += n;
            return Some(&p[self.off - n..self.off]);
        }
        scratch.clear();
        while scratch.len() < n {
            if self.done() {
                return None;
            }
            let p = self.parts[self.i].as_ref();
            let k = (p.len() - self.off).min(n - scratch.len());
            scratch.extend_from_slice(&p[self.off..self.off + k]);
            self.off += k;
        }
        Some(scratch)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two ends of a link after the handshake.
    pub(crate) fn pair() -> (snow::TransportState, snow::TransportState) {
        let (a, pa) = generate_keypair().unwrap();
        let (b, pb) = generate_keypair().unwrap();
        let (c, pc) = generate_keypair().unwrap();
        let _ = c;
        let ka = LinkKeys {
            private: a,
            publics: [pa, pb, pc],
            job: [0; 32],
        };
        let kb = LinkKeys {
            private: b,
            publics: [pa, pb, pc],
            job: [0; 32],
        };
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let (tx2, rx2) = std::sync::mpsc::channel::<Vec<u8>>();
        let h = std::thread::spawn(move || {
            handshake(
                &kb,
                1,
                0,
                false,
                false,
                |m| {
                    tx2.send(m.to_vec()).unwrap();
                    Ok(())
                },
                || Ok(rx.recv().unwrap()),
            )
            .unwrap()
        });
        let sa = handshake(
            &ka,
            0,
            1,
            true,
            false,
            |m| {
                tx.send(m.to_vec()).unwrap();
                Ok(())
            },
            || Ok(rx2.recv().unwrap()),
        )
        .unwrap();
        (sa, h.join().unwrap())
    }

    /// Keys of parties 0 and 1 (party 2's only as a public key).
    fn two_parties() -> (LinkKeys, LinkKeys) {
        let (a, pa) = generate_keypair().unwrap();
        let (b, pb) = generate_keypair().unwrap();
        let (_, pc) = generate_keypair().unwrap();
        let publics = [pa, pb, pc];
        (
            LinkKeys {
                private: a,
                publics,
                job: [0; 32],
            },
            LinkKeys {
                private: b,
                publics,
                job: [0; 32],
            },
        )
    }

    /// A whole handshake of party 0 (initiator) with party 1, returning
    /// what the initiator sent (its first message and its confirmation).
    fn recorded(ka: &LinkKeys, kb: &LinkKeys) -> Vec<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let (tx2, rx2) = std::sync::mpsc::channel::<Vec<u8>>();
        let (tape_tx, tape) = std::sync::mpsc::channel::<Vec<u8>>();
        let kb = kb.clone();
        let h = std::thread::spawn(move || {
            let send = |m: &[u8]| {
                tx2.send(m.to_vec()).unwrap();
                Ok(())
            };
            handshake(&kb, 1, 0, false, false, send, || Ok(rx.recv().unwrap())).unwrap()
        });
        let send = |m: &[u8]| {
            tape_tx.send(m.to_vec()).unwrap();
            tx.send(m.to_vec()).unwrap();
            Ok(())
        };
        handshake(ka, 0, 1, true, false, send, || Ok(rx2.recv().unwrap())).unwrap();
        h.join().unwrap();
        drop(tx);
        tape.try_iter().collect()
    }

    /// A handshake of party 0 (initiator) with a patient party 1 that
    /// receives `before` ahead of everything, and `after_first` right after
    /// the initiator's first message.
    fn replayed_session(
        ka: &LinkKeys,
        kb: &LinkKeys,
        before: &[Vec<u8>],
        after_first: &[Vec<u8>],
    ) -> (snow::TransportState, snow::TransportState) {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let (tx2, rx2) = std::sync::mpsc::channel::<Vec<u8>>();
        for m in before {
            tx.send(m.clone()).unwrap();
        }
        let kb = kb.clone();
        let responder = std::thread::spawn(move || {
            let send = |m: &[u8]| {
                tx2.send(m.to_vec()).unwrap();
                Ok(())
            };
            handshake(&kb, 1, 0, false, true, send, || Ok(rx.recv().unwrap()))
        });
        let mut sent = 0;
        let send = |m: &[u8]| {
            tx.send(m.to_vec()).unwrap();
            sent += 1;
            if sent == 1 {
                for r in after_first {
                    tx.send(r.clone()).unwrap();
                }
            }
            Ok(())
        };
        let a = handshake(ka, 0, 1, true, false, send, || Ok(rx2.recv().unwrap())).unwrap();
        (a, responder.join().unwrap().unwrap())
    }

    #[test]
    fn a_replayed_handshake_does_not_spoil_the_next_one() {
        let (ka, kb) = two_parties();
        let old = recorded(&ka, &kb);
        assert_eq!(old.len(), 2, "a first message and a confirmation");
        // A new session: the responder meets the recording of the old
        // first message before the real one, and the old confirmation; the
        // initiator skips the answer to the replay (its nonce is not ours).
        let before = [old[0].clone(), old[1].clone()];
        let (mut a, mut b) = replayed_session(&ka, &kb, &before, &[]);
        let s = seal(&mut a, b"after a replay").unwrap();
        assert_eq!(open(&mut b, &s).unwrap(), b"after a replay");
        // A flood of the recording between the real first message and its
        // confirmation: one candidate (the same attempt), not an eviction
        // of the real one.
        let flood = vec![old[0].clone(); 4 * CANDIDATES];
        let (mut a, mut b) = replayed_session(&ka, &kb, &[], &flood);
        let s = seal(&mut a, b"after a flood").unwrap();
        assert_eq!(open(&mut b, &s).unwrap(), b"after a flood");
        // On one TCP connection the replay is refused at its confirmation.
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        tx.send(old[0].clone()).unwrap();
        tx.send(old[1].clone()).unwrap();
        let sink = |_: &[u8]| Ok(());
        let e = handshake(&kb, 1, 0, false, false, sink, || Ok(rx.recv().unwrap()));
        assert!(matches!(e, Err(EngineError::Peer(m)) if m.contains("no confirmation")));
    }

    #[test]
    fn a_party_of_another_job_is_refused_on_both_sides() {
        // the same keys, another job: a rerouted party of a second job
        let (ka, mut kb) = two_parties();
        kb.job = job_digest("job b").unwrap();
        assert_ne!(ka.job, kb.job);
        for patient in [false, true] {
            let (kb, (tx, rx)) = (kb.clone(), std::sync::mpsc::channel::<Vec<u8>>());
            let (tx2, rx2) = std::sync::mpsc::channel::<Vec<u8>>();
            let h = std::thread::spawn(move || {
                let r = handshake(
                    &kb,
                    1,
                    0,
                    false,
                    patient,
                    |m| {
                        let _ = tx2.send(m.to_vec());
                        Ok(())
                    },
                    || rx.recv().map_err(|_| EngineError::Peer("closed".into())),
                );
                r.err().map(|e| e.to_string())
            });
            let r = handshake(
                &ka,
                0,
                1,
                true,
                patient,
                |m| {
                    let _ = tx.send(m.to_vec());
                    Ok(())
                },
                || rx2.recv().map_err(|_| EngineError::Peer("closed".into())),
            );
            let responder = h.join().unwrap().expect("the responder must refuse");
            assert!(responder.contains(OTHER_JOB), "{responder}");
            assert!(r.is_err(), "the initiator must not get a link");
        }
        // the digest depends on the name only
        assert_eq!(job_digest("").unwrap(), job_digest("").unwrap());
        assert_ne!(job_digest("").unwrap(), job_digest("x").unwrap());
    }

    #[test]
    fn a_first_message_without_a_job_is_named_another_version() {
        // what a party of a version before the job digest sends: the nonce alone
        let (ka, kb) = two_parties();
        let mut hs = snow::Builder::new(params().unwrap())
            .local_private_key(&ka.private)
            .remote_public_key(&ka.publics[1])
            .build_initiator()
            .unwrap();
        let mut msg = vec![0u8; 1024];
        let n = hs.write_message(&[7u8; ATTEMPT], &mut msg).unwrap();
        let first = msg[..n].to_vec();
        let mut sent = false;
        let r = handshake(
            &kb,
            1,
            0,
            false,
            true,
            |_| Ok(()),
            || {
                if sent {
                    return Err(EngineError::Peer("closed".into()));
                }
                sent = true;
                Ok(first.clone())
            },
        );
        let e = r.expect_err("refused").to_string();
        assert!(e.contains("another cryptgpu version"), "{e}");
    }

    #[test]
    fn seal_open_roundtrip_and_tamper() {
        let (mut a, mut b) = pair();
        for len in [0usize, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let s = seal(&mut a, &msg).unwrap();
            assert_eq!(open(&mut b, &s).unwrap(), msg);
        }
        let mut s = seal(&mut a, b"secret").unwrap();
        let last = s.len() - 1;
        s[last] ^= 1;
        assert!(open(&mut b, &s).is_err());
        assert!(open(&mut b, &[5]).is_err());
        assert!(open(&mut b, &[9, 0, 1, 2]).is_err());
    }

    #[test]
    fn opening_garbage_never_panics() {
        use proptest::prelude::*;
        let (_, b) = pair();
        let b = std::cell::RefCell::new(b);
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig {
                cases: 256,
                ..ProptestConfig::default()
            },
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        );
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..300), |bytes| {
                prop_assert!(open(&mut b.borrow_mut(), &bytes).is_err() || bytes.is_empty());
                Ok(())
            })
            .unwrap();
    }
}
