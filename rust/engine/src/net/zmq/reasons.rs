//! Why a wait for a neighbour ended without its message: its link closed
//! or the timeout ran out, said with what the party heard before (a
//! refusal on the neighbour's connection, a frame the guard cut, a party
//! connecting without keys).

use super::{mode_mismatch, ZmqTransport, HANDSHAKE, REFUSAL_TEXT};
use crate::error::EngineError;
use crate::net::guard::oversized_reason;
use crate::net::identity::{Unproved, TAG_SKEW_MINUTES};
use crate::net::noise;
use std::sync::atomic::Ordering;

/// A neighbour's reason for giving up its handshakes as it is shown: it
/// authenticates nothing (its connection proved at most an identity tag,
/// which a recording replays), so printable characters only, at most
/// `REFUSAL_TEXT`.
pub(super) fn refusal_text(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(REFUSAL_TEXT)
        .collect();
    if text.is_empty() {
        "no reason given".into()
    } else {
        text
    }
}

/// A neighbour's identity proved its key with a minute more than the
/// allowed skew away from this host's clock: every party blamed the keys,
/// or said the neighbour was not running (a user probe, one host's clock
/// 10 minutes ahead). The minute is authenticated by the tag; behind, it
/// may also be a recording replayed.
fn clock_error(rank: usize, who: usize, ahead: i64) -> EngineError {
    let n = ahead.unsigned_abs();
    let (side, replay) = if ahead > 0 {
        ("ahead of", "")
    } else {
        (
            "behind",
            "; or a stranger replays a recording of its connection over \
             5 minutes old",
        )
    };
    EngineError::Peer(format!(
        "party {rank} got no answer from party {who} within the timeout: a connection claiming \
         party {who} proved its key, but the clock in its identity is {n} minute(s) {side} \
         this host's, and the links allow {TAG_SKEW_MINUTES}: the two hosts' clocks differ \
         (set them right, with NTP for instance){replay}"
    ))
}

/// A neighbour's identity proved the key this party's public-key list
/// gives for party `k`, not the one it gives for the neighbour: the party
/// holding the reordered list was told its neighbour was not running (a
/// user probe).
fn listed_as_error(rank: usize, who: usize, k: usize) -> EngineError {
    EngineError::Peer(format!(
        "party {rank}: encrypted link to party {who} refused (no answer within the timeout): a \
         connection claiming party {who} proved the key that this party's public-key list \
         (CRYPTGPU_PUBKEYS) gives for party {k}: the lists name the keys in another order, \
         most likely this party's (line i must hold party i's public key, as python -m \
         cryptgpu.keys writes them)"
    ))
}

/// A wait on `who` that ran out after the handshakes (`network`: on a
/// network link, where a message can be lost; `dropped`: messages dropped
/// as unauthenticated so far, on encrypted links).
pub(crate) fn running_timeout(
    rank: usize,
    who: usize,
    network: bool,
    dropped: Option<u64>,
) -> EngineError {
    let lost = match dropped {
        Some(n) if n > 0 => format!(
            "; {n} message(s) that failed authentication were dropped on this party's links \
             (altered in transit, or a stranger's)"
        ),
        _ => String::new(),
    };
    let link = if network {
        ", or a message between the two was lost on the way"
    } else {
        ""
    };
    EngineError::Peer(format!(
        "party {rank} got no answer from party {who} within the timeout, in the middle of \
         the session: party {who} is stuck or busy for longer than timeout_s (its process \
         or thread hung or stopped, or its own code runs long){link}{lost}"
    ))
}

impl ZmqTransport {
    /// The error for a wait on `who` whose connections to this party all
    /// closed.
    pub(super) fn closed_error(&self, who: usize) -> EngineError {
        let rank = self.rank;
        if let Some(text) = &self.refusal[who] {
            return EngineError::Peer(format!(
                "party {rank}: party {who} closed its link after a message on its connection \
                 said it gave up its handshakes (not authenticated: {text})"
            ));
        }
        let cut = self
            .guard
            .as_ref()
            .map_or(0, |g| g.stats.proved_oversized.load(Ordering::Relaxed));
        let why = if cut > 0 {
            oversized_reason(self.guard.as_ref().map_or(0, |g| g.max_frame()))
        } else {
            "the process exited or the connection broke".to_string()
        };
        EngineError::Peer(format!("party {rank}: party {who} closed its link ({why})"))
    }

    /// The error for a wait on `who` that ran out.
    pub(super) fn timeout_error(&self, who: usize) -> EngineError {
        let rank = self.rank;
        if self.running {
            // mid-session: the start-up causes below cannot be it (until the
            // thirtieth session a lost frame was blamed on addresses and the
            // peers lists' order, a user probe)
            return running_timeout(rank, who, true, self.encrypted.then_some(self.dropped));
        }
        if let Some(r) =
            (0..3).find(|&r| !self.encrypted && self.pending[r].iter().any(|m| m.0 == HANDSHAKE))
        {
            return mode_mismatch(rank, r);
        }
        if self.plain[who] > 0 {
            return EngineError::Peer(format!(
                "party {rank} got no answer from party {who} within the timeout; party {who} \
                 connected without a key (its socket identity carried no key's tag): it seems \
                 to run without encryption (CRYPTGPU_INSECURE=1) while this party encrypts its \
                 links: all parties must agree"
            ));
        }
        // what identities claiming `who` said, until its link is up (after
        // that, only a stranger's would fail, and they name no cause)
        let link = if who == (rank + 1) % 3 { 0 } else { 1 };
        let claim = match self.noise[link] {
            Some(_) => None,
            None => self.claims[who],
        };
        match claim {
            Some(Unproved::Clock { ahead }) => return clock_error(rank, who, ahead),
            Some(Unproved::ListedAs(k)) => return listed_as_error(rank, who, k),
            _ => {}
        }
        if let Some(text) = &self.refusal[who] {
            return EngineError::Peer(format!(
                "party {rank} got no answer from party {who} within the timeout; a message on \
                 its connection said it gave up its handshakes (not authenticated: {text})"
            ));
        }
        let no_key = claim == Some(Unproved::NoKey);
        if self.unproved[who] > 0 || no_key {
            let mut seen = Vec::new();
            if no_key {
                seen.push(format!(
                    "a connection claiming party {who} carried an identity tag that no public \
                     key this party holds proves"
                ));
            }
            if self.unproved[who] > 0 {
                seen.push(format!(
                    "{} message(s) claiming party {who} came on a connection that did not prove \
                     its key",
                    self.unproved[who]
                ));
            }
            return noise::refused(
                rank,
                who,
                &format!(
                    "no answer within the timeout; {}: a wrong key on either side, or a \
                     stranger posing as it, does this",
                    seen.join("; ")
                ),
            );
        }
        // nothing heard at all: the usual causes, named (a party whose
        // CRYPTGPU_PEERS list had another order saw only this, a probe)
        EngineError::Peer(format!(
            "party {rank} got no answer from party {who} within the timeout (party {who} is \
             not running or is stuck, cannot reach this party's address, or the parties' \
             CRYPTGPU_PEERS lists differ in order)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the default limit (the largest message the protocol sends) or
    /// above, an oversized frame is corruption or tampering; only a limit
    /// set smaller is blamed (a user probe's flipped length bit was).
    #[test]
    fn an_oversized_frame_blames_the_limit_only_when_it_was_set_smaller() {
        let largest = crate::net::tcp::largest_message();
        let at_default = oversized_reason(largest);
        assert!(at_default.contains("corrupted or tampered"), "{at_default}");
        assert!(!at_default.contains("too small"), "{at_default}");
        assert!(oversized_reason(u64::MAX).contains("corrupted or tampered"));
        let small = oversized_reason(largest - 1);
        assert!(
            small.contains("CRYPTGPU_MAX_FRAME_BYTES is too small"),
            "{small}"
        );
    }

    #[test]
    fn a_refusal_is_shown_printable_and_short() {
        assert_eq!(refusal_text(b""), "no reason given");
        assert_eq!(refusal_text(b"ok \x1b[31mred\x1b[0m\n"), "ok [31mred[0m");
        assert_eq!(refusal_text(&[b'x'; 1000]).len(), REFUSAL_TEXT);
    }
}
