//! The end of a ZeroMQ session: neighbours' connections watched, BYE
//! exchanged (sealed on encrypted links).

use super::{idx, Body, ZmqTransport, BYE, BYE_TEXT, FRAME};
use crate::error::{EngineError, Result};
use crate::net::identity::{identity, why_unproved, Unproved};
use crate::net::{farewell, noise, Farewell, Msg, Peer};
use std::time::{Duration, Instant};

/// Past `until` in `late_reason`'s wait: never reached (the wait ends at
/// `until`).
const GRACE_END: Duration = Duration::from_secs(1);

impl ZmqTransport {
    /// Record neighbours whose connection to our ROUTER socket closed (or came
    /// back).
    pub(super) fn watch_connections(&mut self) {
        let Some(mon) = self.monitor.as_mut() else {
            return;
        };
        while let Ok(ev) = mon.try_recv() {
            let (id, up) = match &ev {
                zeromq::SocketEvent::Disconnected(id) => (id.to_vec(), false),
                zeromq::SocketEvent::Accepted(_, id) => (id.to_vec(), true),
                _ => continue,
            };
            // The guard tags each connection's identity with `#n`: several
            // connections may name one party, and the party is gone only
            // when none of them is left. On encrypted links only a
            // connection that proved the party's key names it (the guard
            // marks other claims with `~`), so a stranger's claim cannot
            // hide a neighbour's departure; unencrypted, any claim counts.
            let claim = id.split(|&b| b == b'#').next().unwrap_or(&[]);
            // on encrypted links, a party's plain identity (no key's tag) is
            // what a party without keys connects with
            if let Some(r) = (0..3).find(|&r| {
                up && self.encrypted && claim.strip_prefix(b"~") == Some(&identity(r)[..])
            }) {
                self.plain[r] += 1;
            }
            // an identity claiming a neighbour that did not prove its key:
            // why, as far as its tag tells (for the timeout's wording only)
            if let (true, Some(keys), Some(claimed)) =
                (up, self.keys.as_ref(), claim.strip_prefix(b"~"))
            {
                if let Some((r, why)) = why_unproved(keys, self.rank, claimed) {
                    let proved = !matches!(why, Unproved::NoKey);
                    if proved || self.claims[r].is_none() {
                        self.claims[r] = Some(why);
                    }
                }
            }
            if let Some(r) = (0..3).find(|&r| identity(r) == claim) {
                if up {
                    self.links[r] += 1;
                    self.gone[r] = None;
                } else {
                    self.links[r] = self.links[r].saturating_sub(1);
                    if self.links[r] == 0 {
                        self.gone[r] = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// Say BYE to both neighbours and wait (at most `grace`) for theirs. On
    /// encrypted links the BYE is sealed, so a neighbour still waiting for
    /// this party's message can trust it and stop at once (a stranger's
    /// BYE would not open). What a neighbour sent that this party never
    /// read is judged by `net::farewell`: its abort notice is the error
    /// (the session failed after this party's last operation), protocol
    /// messages mean the two ran different programs. Only messages that
    /// open under the link's keys count: a stranger replaying a recorded
    /// connection (whose identity tag still proves the key) made a party
    /// report that the parties ran different programs.
    pub(super) fn goodbye(&mut self, grace: Duration) -> Result<()> {
        for peer in [Peer::Next, Peer::Prev] {
            let body = match self.noise[idx(peer)].as_mut() {
                Some(st) => noise::seal(st, BYE_TEXT).unwrap_or_default(),
                None => Vec::new(),
            };
            let _ = self.post(peer, BYE, &body);
        }
        let deadline = Instant::now() + grace;
        let mut heard = Vec::with_capacity(2);
        for peer in [Peer::Next, Peer::Prev] {
            let who = peer.rank(self.rank);
            let (mut unread, mut abort) = (0usize, None);
            loop {
                match self.take(who, deadline) {
                    Err(_) => break,
                    Ok((BYE, body)) if self.genuine_bye(peer, &body.bytes()) => break,
                    Ok((FRAME, body)) => match self.frame_at_end(peer, &body) {
                        Some(Msg::Data(..)) => unread += 1,
                        // nothing follows a neighbour's abort (not even a BYE)
                        Some(Msg::Abort(why)) => {
                            abort = Some(why);
                            break;
                        }
                        None => self.dropped += 1,
                    },
                    Ok(_) => continue,
                }
            }
            self.unread += unread;
            heard.push(Farewell { who, abort, unread });
        }
        farewell(self.rank, &heard)
    }

    /// The error for a wait on `from` that ran out (`timeout`), or the
    /// reason `from` gives if its abort notice comes within a second: a
    /// neighbour that timed out waiting for a silent third party at about
    /// the same moment sends it, and the silent party, not the neighbour,
    /// is then named (both reported their own wait, so one named a party
    /// that was alive).
    pub(super) fn late_reason(&mut self, from: Peer, timeout: EngineError) -> EngineError {
        let who = from.rank(self.rank);
        let until = Instant::now() + self.timeout.min(Duration::from_secs(1));
        while let Ok(Some((kind, body))) = self.take_until(who, until, until + GRACE_END) {
            if kind == FRAME {
                if let Some(Msg::Abort(why)) = self.frame_at_end(from, &body) {
                    return EngineError::Peer(format!("party {who} aborted: {why}"));
                }
            }
        }
        timeout
    }

    /// A frame read at the end of the session, opened under the link's
    /// keys and decoded; None when it does not authenticate (a stranger's,
    /// a replay of an earlier connection) or is malformed.
    fn frame_at_end(&mut self, from: Peer, body: &Body) -> Option<Msg> {
        let plain = match self.noise[idx(from)].as_mut() {
            Some(_) if body.is_empty() => return None,
            Some(st) => body.open(st).ok()?,
            None => body.clone(),
        };
        plain.read_frame().ok().filter(|m| m.1).map(|m| m.0)
    }

    /// Whether a BYE's body is genuine: sealed by the neighbour on
    /// encrypted links (opened with its receive key), anything unencrypted.
    pub(super) fn genuine_bye(&mut self, from: Peer, body: &[u8]) -> bool {
        match self.noise[idx(from)].as_mut() {
            None => true,
            Some(st) => !body.is_empty() && noise::open(st, body).is_ok_and(|b| b == BYE_TEXT),
        }
    }
}
