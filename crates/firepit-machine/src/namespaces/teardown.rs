//! Destroying many machines at once, off the caller's threads:
//! [`Backend::destroy_then`](crate::Backend::destroy_then) queues the
//! destroy for a few threads of the backend's own ([`Teardown`]) and returns
//! at once, so a thousand sessions destroyed together neither hold a
//! thousand of the caller's blocking threads (an async runtime's pool, which
//! every other blocking call of its API then waits behind) nor run a
//! thousand removals against each other. Each destroy is what
//! [`Backend::destroy`](crate::Backend::destroy) does; the workers sleep on
//! their queue and wake for nothing else.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::Error;

/// A destroy waiting for a worker.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The teardown workers: started on first use, ended with the backend (the
/// queue closes).
pub(crate) struct Teardown {
    workers: usize,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Teardown {
    /// Teardown by `workers` threads (at least one).
    pub(crate) fn new(workers: usize) -> Teardown {
        Teardown {
            workers: workers.max(1),
            queue: Mutex::new(None),
        }
    }

    /// Queues `job` for a worker. `Err` gives the job back when no worker
    /// could be started.
    pub(crate) fn run(&self, job: Job) -> Result<(), (Job, Error)> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_none() {
            match self.start() {
                Ok(tx) => *queue = Some(tx),
                Err(e) => return Err((job, e)),
            }
        }
        let tx = queue.as_ref().expect("started above");
        tx.send(job).map_err(|mpsc::SendError(job)| {
            (
                job,
                Error::sys("queueing a destroy")(std::io::Error::other("the workers ended")),
            )
        })
    }

    /// Starts the workers: they share one queue and each runs one job at a
    /// time.
    fn start(&self) -> Result<mpsc::Sender<Job>, Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..self.workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fp-teardown-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                if i == 0 {
                    return Err(Error::sys("starting the teardown workers")(e));
                }
                // Fewer workers than asked: they still drain the queue.
                break;
            }
        }
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn jobs_run_on_at_most_the_workers_at_once_and_all_finish() {
        let t = Teardown::new(3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Arc::new(Mutex::new(go_rx));
        for _ in 0..20 {
            let (running, most, done_tx, go_rx) = (
                running.clone(),
                most.clone(),
                done_tx.clone(),
                go_rx.clone(),
            );
            let job: Job = Box::new(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Held until the test lets one job go.
                let _ = go_rx.lock().unwrap().recv();
                running.fetch_sub(1, Ordering::SeqCst);
                done_tx.send(()).unwrap();
            });
            assert!(t.run(job).is_ok());
        }
        for _ in 0..20 {
            go_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
