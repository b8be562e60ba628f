//! The start of a ZeroMQ session: the Noise handshake on each link (keys
//! given), or a plain exchange of nonces (insecure links), both of which
//! dial the neighbour again when its connection may have reached its
//! previous session.
//!
//! A neighbour that starts a session again (`init` after `init`, or after
//! `uninit`) may still be in its previous one, or closing it, when this
//! party dials: the connection then reaches the old session and dies with
//! it, and ZeroMQ does not dial a DEALER again. So a handshake dials again
//! when it hears nothing for a while (the initiator then starts a new
//! attempt), when a send fails, and before answering an attempt after the
//! first (the responder: the initiator did not get the earlier answer).

use super::reasons::refusal_text;
use super::{idx, mode_mismatch, ZmqTransport, HANDSHAKE, HELLO, HELLO_BACK, HELLO_DONE, REFUSED};
use crate::error::{EngineError, Result};
use crate::net::noise::{self, keep_last, LinkKeys};
use crate::net::Peer;
use std::time::{Duration, Instant};

/// How long a handshake waits for a neighbour's message before it dials
/// the neighbour again and, as initiator, starts a new attempt (doubling up
/// to `RETRY_MAX`), on a fast link: on a slow one, at least twice and four
/// times the time its last connection took (`ZmqTransport::retry`), as an
/// answer takes a round trip and a connection about two.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Attempts an insecure link's initiator keeps open, and answered ones its
/// responder remembers.
const ATTEMPTS: usize = 32;

impl ZmqTransport {
    /// The Noise handshake with `peer`.
    pub(super) fn handshake(
        &mut self,
        keys: &LinkKeys,
        peer: Peer,
        initiator: bool,
    ) -> Result<snow::TransportState> {
        let (me, who) = (self.rank, peer.rank(self.rank));
        let deadline = Instant::now() + self.timeout;
        self.refusal[who] = None;
        let (mut quiet, most) = self.retry(who);
        let this = std::cell::RefCell::new(&mut *self);
        let mut answers = 0usize;
        // counted from the last attempt, not from the last message (a
        // replayer's messages do not put the next attempt off)
        let mut next_try = Instant::now() + quiet;
        let r = noise::handshake_retrying(
            keys,
            me,
            who,
            initiator,
            true, // strangers' (proved replays') messages come on the same socket
            |m| {
                let mut t = this.borrow_mut();
                if initiator {
                    return t.post_or_redial(Some(keys), peer, HANDSHAKE, m, deadline);
                }
                t.answer(Some(keys), peer, HANDSHAKE, m, answers > 0);
                answers += 1;
                Ok(())
            },
            || loop {
                let until = deadline.min(next_try);
                let Some((kind, body)) = this.borrow_mut().take_until(who, until, deadline)? else {
                    quiet = (quiet * 2).min(most);
                    next_try = Instant::now() + quiet;
                    if initiator {
                        this.borrow_mut().redial(Some(keys), peer, deadline)?;
                    }
                    break Ok(None);
                };
                let body = body.bytes();
                break match kind {
                    HANDSHAKE => Ok(Some(body.to_vec())),
                    // Nothing authenticates a refusal (its connection proved
                    // at most an identity tag, which a recording of it
                    // replays: a stranger's forged REFUSED ended a session's
                    // start for all three parties, with its own text, in a
                    // user probe): kept, and shown as not authenticated if
                    // the neighbour's link then closes (as a party that
                    // gives up does at once) or the wait runs out.
                    REFUSED => {
                        this.borrow_mut().refusal[who] = Some(refusal_text(&body));
                        continue;
                    }
                    // a recording of another session's messages (its
                    // connection proved a key with a replayed identity tag)
                    _ => continue,
                };
            },
        );
        self.refusal[who] = None;
        r
    }

    /// Insecure links: the initiator sends a random nonce (HELLO) until
    /// one comes back (HELLO_BACK), then confirms it (HELLO_DONE); the
    /// responder answers each new nonce and is done at a confirmation of
    /// one it answered. Nothing is authenticated (a trusted network):
    /// this only makes sure each link reaches the neighbour's current
    /// session before the first protocol message.
    pub(super) fn hello(&mut self, peer: Peer, initiator: bool) -> Result<()> {
        let (me, who) = (self.rank, peer.rank(self.rank));
        let deadline = Instant::now() + self.timeout;
        let (mut quiet, most) = self.retry(who);
        let mut next_try = Instant::now() + quiet;
        // the initiator's open attempts; the responder's answered ones
        let mut nonces: Vec<[u8; 8]> = Vec::new();
        if initiator {
            self.attempt(peer, &mut nonces, deadline)?;
        }
        loop {
            let Some((kind, body)) = self.take_until(who, deadline.min(next_try), deadline)? else {
                quiet = (quiet * 2).min(most);
                next_try = Instant::now() + quiet;
                if initiator {
                    self.redial(None, peer, deadline)?;
                    self.attempt(peer, &mut nonces, deadline)?;
                }
                continue;
            };
            let nonce: Option<[u8; 8]> = body.bytes()[..].try_into().ok();
            let known = nonce.is_some_and(|n| nonces.contains(&n));
            match (kind, nonce) {
                (HANDSHAKE | REFUSED, _) => return Err(mode_mismatch(me, who)),
                (HELLO_BACK, Some(n)) if initiator && known => {
                    return self.post_or_redial(None, peer, HELLO_DONE, &n, deadline);
                }
                (HELLO, Some(n)) if !initiator && !known => {
                    self.answer(None, peer, HELLO_BACK, &n, !nonces.is_empty());
                    keep_last(&mut nonces, n, ATTEMPTS);
                }
                (HELLO_DONE, Some(_)) if !initiator && known => return Ok(()),
                // a repeated attempt, the answer to a dropped one
                _ => continue,
            }
        }
    }

    /// The first and the longest wait for a neighbour's message before a
    /// handshake dials it again: `RETRY_FIRST` and `RETRY_MAX` on a fast
    /// link, at least twice and four times the last connection to it took
    /// on a slow one (an initiator that dialled again every 0.5-1 s
    /// never heard an answer that takes longer).
    fn retry(&self, who: usize) -> (Duration, Duration) {
        let link = self.slow_link[who].unwrap_or_default();
        (
            RETRY_FIRST.max(link.saturating_mul(2)),
            RETRY_MAX.max(link.saturating_mul(4)),
        )
    }

    /// A new insecure attempt: a fresh nonce sent as HELLO.
    fn attempt(&mut self, peer: Peer, open: &mut Vec<[u8; 8]>, deadline: Instant) -> Result<()> {
        let mut n = [0u8; 8];
        getrandom::getrandom(&mut n)
            .map_err(|e| EngineError::Internal(format!("no random number generator: {e}")))?;
        self.post_or_redial(None, peer, HELLO, &n, deadline)?;
        keep_last(open, n, ATTEMPTS);
        Ok(())
    }

    /// Post a control message; if the send fails, dial again and post once
    /// more.
    fn post_or_redial(
        &mut self,
        keys: Option<&LinkKeys>,
        peer: Peer,
        kind: u8,
        body: &[u8],
        deadline: Instant,
    ) -> Result<()> {
        if self.post(peer, kind, body).is_ok() {
            return Ok(());
        }
        self.redial(keys, peer, deadline)?;
        self.post(peer, kind, body)
    }

    /// A responder's answer. Before a repeated attempt's (`again`: the
    /// initiator did not get the earlier answer) and after a failed send,
    /// one short try to dial again, at most once per `RETRY_FIRST`; a lost
    /// answer is no error (the initiator asks again). A longer wait here
    /// could outlast an initiator that is done (its confirmation may be
    /// queued behind stale attempts) and has closed its port.
    fn answer(&mut self, keys: Option<&LinkKeys>, peer: Peer, kind: u8, body: &[u8], again: bool) {
        let (first, _) = self.retry(peer.rank(self.rank));
        let redial = |t: &mut Self| {
            if t.redialled.is_some_and(|at| at.elapsed() < first) {
                return;
            }
            t.redialled = Some(Instant::now());
            // a slow link's connection takes longer (`retry`)
            let brief = Instant::now() + super::CONNECT_ATTEMPT.max(first);
            let _ = t.redial(keys, peer, brief);
        };
        if again {
            redial(self);
        }
        if self.post(peer, kind, body).is_err() {
            redial(self);
            let _ = self.post(peer, kind, body);
        }
    }

    /// A new connection to `peer` in place of the current one (dropped once
    /// the new one is up, so the neighbour never sees this party gone).
    fn redial(&mut self, keys: Option<&LinkKeys>, peer: Peer, deadline: Instant) -> Result<()> {
        let who = peer.rank(self.rank);
        // a slow link's first attempt twice as long as its last connection
        let first = self.slow_link[who].unwrap_or_default().saturating_mul(2);
        let (s, took) = Self::dial(
            &self.rt,
            self.rank,
            who,
            self.addrs[who],
            keys,
            deadline,
            self.timeout,
            first,
        )?;
        self.push[idx(peer)] = Some(s);
        self.slow_link[who] = super::slow(took);
        Ok(())
    }
}
