//! [`SimpleExecutor`]: a small FIFO thread pool with a timer thread.
//!
//! # Design
//!
//! One queue (`Mutex<VecDeque<Job>>`) shared by `n` workers, plus a list of
//! parked workers. `schedule` pushes at the tail and unparks one parked
//! worker; a worker pops from the head, runs the job outside the lock, and
//! parks when the queue is empty (registering itself in the parked list under
//! the lock first, so a push that happens after its check finds it there;
//! the unpark token covers the window between unlocking and parking).
//!
//! A timer thread keeps a min-heap of `(deadline, seq, job)` and moves due
//! jobs to the queue; it parks until the earliest deadline.
//!
//! Dropping the executor stops accepting jobs, lets the workers drain what is
//! queued, drops pending timers (their tasks complete with
//! [`TaskError::Rejected`](super::TaskError::Rejected)) and joins the threads
//! (except the calling one, when the last handle is dropped by one of its
//! own jobs). A panicking job is caught so that it cannot kill its worker.
//!
//! Real threads and a real clock: this executor exists in the default build
//! only; the models drive tasks with their own executors.

use core::cell::Cell;
use core::cmp::Reverse;
use core::fmt;
use core::time::Duration;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use super::executor::{Executor, Job, ScheduleError};
use crate::sync::{thread, Arc, Mutex};
use crate::unwind::caught;

crate::sync::thread_local! {
    /// The identity (address of its `Pool`) of the pool this thread works
    /// for, or 0.
    #[allow(clippy::missing_const_for_thread_local)] // as in context.rs
    static WORKER_OF: Cell<usize> = Cell::new(0);
}

struct Queue {
    jobs: VecDeque<Job>,
    parked: Vec<thread::Thread>,
    shutdown: bool,
}

struct Timed {
    at: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Timers {
    heap: BinaryHeap<Reverse<Timed>>,
    seq: u64,
    shutdown: bool,
}

struct Pool {
    queue: Mutex<Queue>,
    timers: Mutex<Timers>,
}

impl Pool {
    fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    fn push(&self, job: Job) -> Result<(), ScheduleError> {
        let mut q = self.queue.lock();
        if q.shutdown {
            drop(q);
            return Err(ScheduleError::new(job));
        }
        q.jobs.push_back(job);
        let wake = q.parked.pop();
        drop(q);
        if let Some(t) = wake {
            t.unpark();
        }
        Ok(())
    }

    fn work(self: Arc<Self>) {
        WORKER_OF.with(|w| w.set(self.id()));
        let me = thread::current();
        loop {
            let mut q = self.queue.lock();
            // A spurious wake-up may leave us in the parked list.
            q.parked.retain(|t| t.id() != me.id());
            if let Some(job) = q.jobs.pop_front() {
                drop(q);
                // A panicking job must not take the worker down with it. The
                // task jobs never panic (they catch the task's panic).
                caught(job);
                continue;
            }
            if q.shutdown {
                return;
            }
            q.parked.push(me.clone());
            drop(q);
            thread::park();
        }
    }

    fn time(self: Arc<Self>) {
        loop {
            let mut t = self.timers.lock();
            if t.shutdown {
                let pending = core::mem::take(&mut t.heap);
                drop(t);
                // Dropped unrun: their tasks complete with `Rejected` (user
                // code, which must not end this thread early).
                caught(move || drop(pending));
                return;
            }
            let now = Instant::now();
            match t.heap.peek() {
                Some(Reverse(top)) if top.at <= now => {
                    let Reverse(due) = t.heap.pop().expect("peeked");
                    drop(t);
                    // Refused (shut down): dropping the job rejects its task.
                    let refused = self.push(due.job);
                    caught(move || drop(refused));
                }
                Some(Reverse(top)) => {
                    let wait = top.at - now;
                    drop(t);
                    thread::park_timeout(wait);
                }
                None => {
                    drop(t);
                    thread::park();
                }
            }
        }
    }
}

/// How far in the future a timer whose deadline cannot be represented is
/// kept: in effect never, until the pool stops.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A fixed-size thread pool with FIFO scheduling and timers: async_simple's
/// `SimpleExecutor`.
///
/// [`new`](Self::new) returns it in an `Arc`, ready to be passed to
/// [`Lazy::via`](super::Lazy::via) (it coerces to
/// [`ExecutorRef`](super::ExecutorRef)). Dropping the last handle stops the
/// pool: queued jobs still run, pending timers are dropped (their tasks
/// complete with [`TaskError::Rejected`](super::TaskError::Rejected)), and the
/// threads are joined. Tasks on the pool hold handles too, and a task asleep
/// on it is held by its timer: to stop a pool whose tasks may be sleeping,
/// call [`shutdown`](Self::shutdown).
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await, Executor, Lazy, SimpleExecutor};
///
/// let ex = SimpleExecutor::new(2);
/// let on_pool = sync_await(Lazy::new(async {
///     lazyflight::task::current_executor().unwrap().current_thread_in_executor()
/// }).via(ex.clone()));
/// assert!(on_pool);
/// assert!(!ex.current_thread_in_executor());
/// ```
pub struct SimpleExecutor {
    pool: Arc<Pool>,
    threads: usize,
    workers: Mutex<Vec<thread::JoinHandle<()>>>,
    /// The timer thread, unparked when an earlier deadline comes in.
    timer_thread: thread::Thread,
    /// The timer thread's handle; taken and joined by `shutdown` (or `Drop`).
    timer: Mutex<Option<thread::JoinHandle<()>>>,
    /// Where `shutdown` stands, for calls that overlap the first one.
    stop: Mutex<Stop>,
}

/// Where [`SimpleExecutor::shutdown`] stands.
enum Stop {
    /// Not called yet.
    Running,
    /// The first call is stopping the pool; the threads of later calls wait
    /// for it, parked, to be unparked when it is done.
    Stopping(Vec<thread::Thread>),
    /// The first call has returned (or unwound).
    Stopped,
}

/// Marks the first `shutdown` done when it ends, returning or unwinding, and
/// unparks the calls waiting for it.
struct Stopped<'a>(&'a SimpleExecutor);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let waiting = match core::mem::replace(&mut *self.0.stop.lock(), Stop::Stopped) {
            Stop::Stopping(waiting) => waiting,
            Stop::Running | Stop::Stopped => Vec::new(),
        };
        for t in waiting {
            t.unpark();
        }
    }
}

impl SimpleExecutor {
    /// Starts `threads` workers (at least one) and a timer thread.
    ///
    /// # Panics
    ///
    /// If the operating system refuses to start a thread.
    pub fn new(threads: usize) -> Arc<SimpleExecutor> {
        let threads = threads.max(1);
        let pool = Arc::new(Pool {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                parked: Vec::new(),
                shutdown: false,
            }),
            timers: Mutex::new(Timers {
                heap: BinaryHeap::new(),
                seq: 0,
                shutdown: false,
            }),
        });
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let p = pool.clone();
            match thread::Builder::new()
                .name(format!("lazyflight-worker-{i}"))
                .spawn(move || p.work())
            {
                Ok(w) => workers.push(w),
                Err(e) => {
                    // Stop the workers already started before giving up.
                    Self::stop(&pool, workers);
                    panic!("failed to start a SimpleExecutor worker: {e}");
                }
            }
        }
        let p = pool.clone();
        let timer = match thread::Builder::new()
            .name("lazyflight-timer".into())
            .spawn(move || p.time())
        {
            Ok(t) => t,
            Err(e) => {
                Self::stop(&pool, workers);
                panic!("failed to start the SimpleExecutor timer: {e}");
            }
        };
        Arc::new(SimpleExecutor {
            pool,
            threads,
            workers: Mutex::new(workers),
            timer_thread: timer.thread().clone(),
            timer: Mutex::new(Some(timer)),
            stop: Mutex::new(Stop::Running),
        })
    }

    /// Stops the pool now, as dropping its last handle does: queued jobs
    /// still run, pending timers are dropped (their tasks complete with
    /// [`TaskError::Rejected`](super::TaskError::Rejected)), later schedules
    /// are refused, and the threads are joined (but the calling thread, if
    /// it is one of them). Calling it again does nothing, but a call that
    /// overlaps the first one (or the last handle's drop), from a thread not
    /// of the pool, returns only once the pool has stopped.
    ///
    /// A task asleep on the pool ([`sleep`](super::sleep)) holds a handle to
    /// it through its context, and the pool holds the task's timer: until
    /// the timer fires, dropping every handle of your own does not stop the
    /// pool. `shutdown` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use lazyflight::sync::{Arc, Mutex};
    /// use lazyflight::task::{sleep, Executor, Lazy, SimpleExecutor, TaskError};
    ///
    /// let ex = SimpleExecutor::new(1);
    /// let got = Arc::new(Mutex::new(None));
    /// let g = got.clone();
    /// Lazy::new(async { sleep(Duration::from_secs(3600)).await })
    ///     .via(ex.clone())
    ///     .start(move |t| *g.lock() = Some(t.into_result()));
    /// ex.shutdown();
    /// // The hour-long sleep was cut short: its timer was dropped, and the
    /// // task completed before `shutdown` returned.
    /// let r = got.lock().take().expect("completed");
    /// assert!(matches!(r, Err(TaskError::Rejected) | Ok(Err(TaskError::Rejected))));
    /// assert!(ex.schedule(Box::new(|| {})).is_err());
    /// ```
    pub fn shutdown(&self) {
        // It blocks (it joins the workers and the timer thread): called
        // inside a run, the runs queued on this thread go first, since a
        // worker may be waiting for one of them.
        super::make_queued_runs();
        {
            let mut stop = self.stop.lock();
            match &mut *stop {
                Stop::Running => *stop = Stop::Stopping(Vec::new()),
                Stop::Stopped => return,
                Stop::Stopping(waiting) => {
                    // Another call is stopping the pool. A thread of the
                    // pool must not wait for it: that call may be joining
                    // this very thread.
                    let me = thread::current();
                    if self.current_thread_in_executor() || me.id() == self.timer_thread.id() {
                        return;
                    }
                    waiting.push(me);
                    drop(stop);
                    // Unparked by `Stopped`; a spurious wake-up looks again.
                    while !matches!(*self.stop.lock(), Stop::Stopped) {
                        thread::park();
                    }
                    return;
                }
            }
        }
        let _stopped = Stopped(self);
        self.pool.timers.lock().shutdown = true;
        let workers = core::mem::take(&mut *self.workers.lock());
        Self::stop(&self.pool, workers);
        // The timer thread drops the pending timers, then ends. (A timer's
        // task may complete on it, and its callback may call this: it does
        // not join itself.)
        let timer = self.timer.lock().take();
        if let Some(timer) = timer {
            timer.thread().unpark();
            if timer.thread().id() != thread::current().id() {
                let _ = timer.join();
            }
        }
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Stops accepting jobs, wakes the parked workers and joins them (but the
    /// calling thread, when it is one of them).
    fn stop(pool: &Pool, workers: Vec<thread::JoinHandle<()>>) {
        let parked = {
            let mut q = pool.queue.lock();
            q.shutdown = true;
            core::mem::take(&mut q.parked)
        };
        for t in parked {
            t.unpark();
        }
        let me = thread::current().id();
        for w in workers {
            if w.thread().id() != me {
                let _ = w.join();
            }
        }
    }
}

impl Executor for SimpleExecutor {
    fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
        self.pool.push(job)
    }

    fn current_thread_in_executor(&self) -> bool {
        WORKER_OF.with(|w| w.get() == self.pool.id())
    }

    fn schedule_after(&self, delay: Duration, job: Job) -> Result<(), ScheduleError> {
        if delay.is_zero() {
            return self.schedule(job);
        }
        let now = Instant::now();
        // A deadline past what `Instant` can hold is never due.
        let at = now.checked_add(delay).unwrap_or_else(|| now + NEVER);
        let mut t = self.pool.timers.lock();
        if t.shutdown {
            drop(t);
            return Err(ScheduleError::new(job));
        }
        t.seq += 1;
        let seq = t.seq;
        let earliest = t.heap.peek().is_none_or(|Reverse(top)| at < top.at);
        t.heap.push(Reverse(Timed { at, seq, job }));
        drop(t);
        if earliest {
            self.timer_thread.unpark();
        }
        Ok(())
    }

    fn name(&self) -> &str {
        "SimpleExecutor"
    }
}

impl Drop for SimpleExecutor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for SimpleExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = self.pool.queue.lock();
        f.debug_struct("SimpleExecutor")
            .field("threads", &self.threads)
            .field("queued", &q.jobs.len())
            .field("parked", &q.parked.len())
            .finish()
    }
}
