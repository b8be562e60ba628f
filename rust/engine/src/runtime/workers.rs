//! Persistent party threads for the local runtime.
//!
//! Every communicating call runs the three parties at once (they exchange
//! messages, so they cannot run one after another). Spawning three OS
//! threads per call cost about 130 microseconds on the 2-core CI machine,
//! more than a whole round of a small product: at batch 1 that was most of
//! a private multiply. Here two threads live as long as the session, and
//! the calling thread runs the first party itself, so a call costs two
//! wake-ups instead of three spawns and joins.

use crossbeam_channel::{bounded, unbounded, Sender};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A job borrowed from the caller's stack; `run_all` does not return before
/// it has run and been dropped.
pub(super) type Borrowed<'a, R> = Box<dyn FnOnce() -> R + Send + 'a>;

/// A panic inside a job, reported instead of the job's result.
pub(super) struct Panicked;

pub(super) struct Workers {
    txs: Vec<Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
    /// The process that started the threads: a child forked from it has
    /// the channels but not the threads, so a job sent there would wait
    /// for ever.
    pid: u32,
}

impl Workers {
    /// `n` threads named `cryptgpu-party-{1..=n}`; None when the OS refuses
    /// a thread (the caller then spawns per call, as before).
    pub(super) fn new(n: usize) -> Option<Workers> {
        let mut txs = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = unbounded::<Job>();
            let h = std::thread::Builder::new()
                .name(format!("cryptgpu-party-{}", i + 1))
                .spawn(move || {
                    // Each job catches its own panic, so the loop only ends
                    // when the session drops its senders.
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .ok()?;
            txs.push(tx);
            handles.push(h);
        }
        Some(Workers {
            txs,
            handles,
            pid: std::process::id(),
        })
    }

    /// False in a child forked after the threads started (they did not
    /// come along): the caller must spawn threads of its own.
    pub(super) fn alive_here(&self) -> bool {
        std::process::id() == self.pid
    }

    /// Run `first` on this thread and `others[i]` on worker i, all at once;
    /// results in order (`first` then `others`). Returns only after every
    /// job has finished and been dropped, which is what makes lending the
    /// workers jobs that borrow from this stack frame sound.
    pub(super) fn run_all<'a, R: Send + 'a>(
        &self,
        first: Borrowed<'a, R>,
        others: Vec<Borrowed<'a, R>>,
    ) -> Vec<Result<R, Panicked>> {
        assert!(others.len() <= self.txs.len(), "more jobs than workers");
        let mut waits = Vec::with_capacity(others.len());
        for (job, tx) in others.into_iter().zip(&self.txs) {
            let (rtx, rrx) = bounded::<Result<R, Panicked>>(1);
            let wrapped: Box<dyn FnOnce() + Send + 'a> = Box::new(move || {
                let r = catch_unwind(AssertUnwindSafe(job)).map_err(|_| Panicked);
                // The receiver outlives this send: run_all waits on it.
                let _ = rtx.send(r);
            });
            // SAFETY: the job borrows data that lives for 'a, which outlasts
            // this call. The job is run (or dropped) before `rrx` yields:
            // `rtx` moves into the job and is dropped only with it, and the
            // loop below blocks on every `rrx`. A job cannot panic out of
            // the worker (it catches its own panic), so the worker thread
            // never exits with a job queued. Dropping `Workers` needs `&mut`,
            // impossible while this `&self` call runs.
            let job: Job =
                unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, Job>(wrapped) };
            if let Err(back) = tx.send(job) {
                // The worker is gone (it cannot be, see above): run the job
                // on a fresh thread instead, still waited on below.
                // If spawning fails too, the job is dropped unrun with its
                // sender, so the wait below ends with an error.
                let _ = std::thread::Builder::new().spawn(back.into_inner());
            }
            waits.push(rrx);
        }
        let mut out = Vec::with_capacity(waits.len() + 1);
        out.push(catch_unwind(AssertUnwindSafe(first)).map_err(|_| Panicked));
        for rrx in waits {
            // Err: the job was dropped without running (no thread for it).
            out.push(rrx.recv().unwrap_or(Err(Panicked)));
        }
        out
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if !self.alive_here() {
            // A forked child has neither the threads nor any lock they held
            // in the channels at the fork: dropping a sender there could
            // wait for ever on such a lock (seen at a child's exit).
            std::mem::forget(std::mem::take(&mut self.txs));
            std::mem::forget(std::mem::take(&mut self.handles));
            return;
        }
        self.txs.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_concurrently_and_may_borrow() {
        let w = Workers::new(2).unwrap();
        let data = [10u64, 20, 30];
        // The three jobs meet at a barrier: they only finish if all three
        // run at the same time.
        let barrier = std::sync::Barrier::new(3);
        for _ in 0..50 {
            let (d, b) = (&data, &barrier);
            let job = |i: usize| -> Borrowed<'_, u64> {
                Box::new(move || {
                    b.wait();
                    d[i] * 2
                })
            };
            let r = w.run_all(job(0), vec![job(1), job(2)]);
            let r: Vec<u64> = r.into_iter().map(|x| x.ok().unwrap()).collect();
            assert_eq!(r, vec![20, 40, 60]);
        }
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_workers_stay_usable() {
        let w = Workers::new(2).unwrap();
        let boom: Borrowed<'_, u32> = Box::new(|| panic!("boom"));
        let r = w.run_all(Box::new(|| 1), vec![boom, Box::new(|| 3)]);
        assert!(r[0].as_ref().is_ok_and(|v| *v == 1));
        assert!(r[1].is_err());
        assert!(r[2].as_ref().is_ok_and(|v| *v == 3));
        let r = w.run_all(Box::new(|| 4), vec![Box::new(|| 5), Box::new(|| 6)]);
        assert!(r.iter().all(|x| x.is_ok()));
    }
}
