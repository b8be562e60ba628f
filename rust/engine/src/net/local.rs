//! The local transport: three party threads of one process joined by
//! bounded channels; buffers move as they are (a GPU buffer is handed over,
//! not copied).

use super::{Msg, Peer, Transport};
use crate::device::Buf;
use crate::error::{EngineError, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// What the local transport's channels carry: a buffer as it is (host or
/// GPU memory), or an abort notice.
enum LocalMsg {
    Data(Buf),
    Abort(String),
}

/// Three parties in one process: buffers are moved through channels, never
/// serialised or copied; on a GPU the device buffer itself is handed over
/// (no host round trip).
pub struct LocalTransport {
    rank: usize,
    to_next: Sender<LocalMsg>,
    to_prev: Sender<LocalMsg>,
    from_next: Receiver<LocalMsg>,
    from_prev: Receiver<LocalMsg>,
    timeout: Duration,
}

/// Build the three connected endpoints of a local session.
pub fn local_triple(timeout: Duration) -> Vec<LocalTransport> {
    // chan[i][j]: messages from i to j. Protocols send at most a couple of
    // messages per link before receiving, so a small bound never blocks.
    let mut tx: Vec<Vec<Option<Sender<LocalMsg>>>> =
        (0..3).map(|_| vec![None, None, None]).collect();
    let mut rx: Vec<Vec<Option<Receiver<LocalMsg>>>> =
        (0..3).map(|_| vec![None, None, None]).collect();
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                let (s, r) = bounded(16);
                tx[i][j] = Some(s);
                rx[i][j] = Some(r);
            }
        }
    }
    let mut out = Vec::new();
    for i in 0..3 {
        let n = (i + 1) % 3;
        let p = (i + 2) % 3;
        out.push(LocalTransport {
            rank: i,
            to_next: tx[i][n].take().expect("channel built above"),
            to_prev: tx[i][p].take().expect("channel built above"),
            from_next: rx[n][i].take().expect("channel built above"),
            from_prev: rx[p][i].take().expect("channel built above"),
            timeout,
        });
    }
    out
}

impl LocalTransport {
    fn put(&mut self, to: Peer, msg: LocalMsg) -> Result<()> {
        let ch = match to {
            Peer::Next => &self.to_next,
            Peer::Prev => &self.to_prev,
        };
        ch.send_timeout(msg, self.timeout).map_err(|_| {
            EngineError::Peer(format!(
                "party {} could not send to party {}: link closed or full",
                self.rank,
                to.rank(self.rank)
            ))
        })
    }
}

impl Transport for LocalTransport {
    fn send(&mut self, to: Peer, msg: Msg) -> Result<()> {
        let m = match msg {
            Msg::Data(v) => LocalMsg::Data(Buf::Host(v)),
            Msg::Abort(why) => LocalMsg::Abort(why),
        };
        self.put(to, m)
    }

    fn send_buf(&mut self, to: Peer, data: Buf) -> Result<()> {
        self.put(to, LocalMsg::Data(data))
    }

    fn recv(&mut self, from: Peer) -> Result<Vec<u64>> {
        self.recv_buf(from)?.into_vec()
    }

    fn recv_buf(&mut self, from: Peer) -> Result<Buf> {
        let ch = match from {
            Peer::Next => &self.from_next,
            Peer::Prev => &self.from_prev,
        };
        let who = from.rank(self.rank);
        match ch.recv_timeout(self.timeout) {
            Ok(LocalMsg::Data(v)) => Ok(v),
            Ok(LocalMsg::Abort(why)) => {
                Err(EngineError::Peer(format!("party {who} aborted: {why}")))
            }
            Err(RecvTimeoutError::Timeout) => Err(EngineError::Peer(format!(
                "party {} got no answer from party {who} within {:?}",
                self.rank, self.timeout
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                Err(EngineError::Peer(format!("party {who} closed its link")))
            }
        }
    }
}
