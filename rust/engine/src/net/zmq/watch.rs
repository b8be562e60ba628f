//! A party waiting for one neighbour's message watches the other's: a
//! party out of step aborts to both neighbours, and the two others, each
//! waiting for the other's message, waited out the timeout and blamed each
//! other, never naming its reason (a user probe). Its abort is now the
//! error at once, if it authenticates.

use super::{idx, Received, ZmqTransport, FRAME};
use crate::error::{EngineError, Result};
use crate::net::Peer;
use std::time::{Duration, Instant};

/// How long a wait for one neighbour runs before the other's messages are
/// looked at again.
const WATCH: Duration = Duration::from_millis(100);

impl ZmqTransport {
    /// The next message from the neighbour at `from`, as `take`; Err at
    /// once when the other neighbour's abort notice arrives meanwhile.
    pub(super) fn take_watching(&mut self, from: Peer, deadline: Instant) -> Result<Received> {
        let who = from.rank(self.rank);
        let other = match from {
            Peer::Next => Peer::Prev,
            Peer::Prev => Peer::Next,
        };
        loop {
            let until = (Instant::now() + WATCH).min(deadline);
            if let Some(m) = self.take_until(who, until, deadline)? {
                return Ok(m);
            }
            self.abort_from(other)?;
        }
    }

    /// Err when the neighbour at `p` aborted: its frames queued so far are
    /// looked at, opened first on encrypted links (and kept opened, for
    /// this party's `recv` from it), so that an abort counts only if it
    /// opens under the link's keys; frames that do not are dropped, as
    /// `recv` drops them.
    fn abort_from(&mut self, p: Peer) -> Result<()> {
        let who = p.rank(self.rank);
        let auth = self.authenticated();
        let mut i = 0;
        while i < self.pending[who].len() {
            let (kind, body) = self.pending[who][i].clone();
            if kind != FRAME {
                i += 1;
                continue;
            }
            let plain = match self.noise[idx(p)].as_mut() {
                None => Some(body),
                // an empty body authenticates nothing
                Some(_) if body.is_empty() && auth => None,
                Some(st) => match body.open(st) {
                    Ok(plain) => Some(plain),
                    Err(_) if auth => None,
                    Err(_) => return Ok(()), // `recv` from it says what is wrong
                },
            };
            let Some(plain) = plain else {
                self.pending[who].remove(i);
                self.dropped += 1;
                continue;
            };
            if let Some(why) = plain.abort_notice() {
                return Err(EngineError::Peer(format!("party {who} aborted: {why}")));
            }
            self.pending[who][i].1 = plain;
            i += 1;
        }
        Ok(())
    }
}
