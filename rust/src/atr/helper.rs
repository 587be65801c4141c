//! A second core for the batch forms, when it is free: one long-lived helper thread that takes
//! tasks of a job from the same counter as the calling thread.
//!
//! Why not a thread per call, or a fixed split: spawning costs tens of microseconds, and a fixed
//! half of the work for another thread makes the call wait for that thread whenever its core is
//! busy with something else (a shared two-core machine). Here the caller never waits for work
//! that has not started: tasks are claimed one at a time, the caller claims until none are
//! left, and a helper that has not woken up by then finds the job withdrawn. The caller only
//! waits for the task the helper is in the middle of. Which thread runs a task never changes
//! its result, so the output is the same bit for bit either way.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// Runs `task(i)` for every `i` in `0..count`, each once, on this thread and on the helper
/// thread when there is one and it is idle. Returns when every task has run.
pub(super) fn for_each_task(count: usize, task: &(dyn Fn(usize) + Sync)) {
    let job = Job { task, count, next: AtomicUsize::new(0) };
    let Some(helper) = Helper::get().filter(|_| count >= 2) else {
        job.run();
        return;
    };
    // SAFETY: the helper only reaches the job between `offer` and the end of `withdraw`, which
    // waits until the helper has let go of it; the guard withdraws even if a task of this
    // thread panics, so `job` outlives both.
    if !unsafe { helper.offer(&job) } {
        job.run();
        return;
    }
    let guard = Withdraw(helper);
    job.run();
    std::mem::forget(guard);
    if helper.withdraw() {
        panic!("ATR helper thread panicked");
    }
}

/// Withdraws the job when dropped: on the way out of a panic of the calling thread.
struct Withdraw(&'static Helper);

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.0.withdraw();
    }
}

/// The tasks of one call, shared with the helper by reference.
struct Job<'a> {
    task: &'a (dyn Fn(usize) + Sync),
    count: usize,
    next: AtomicUsize,
}

impl Job<'_> {
    /// Claims and runs tasks until none are left.
    fn run(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.count {
                return;
            }
            (self.task)(i);
        }
    }
}

/// A job's address with its lifetime erased, for the helper's queue.
#[derive(Clone, Copy)]
struct JobPtr(*const Job<'static>);

// SAFETY: a `Job` is `Sync` (its task is `Sync`, its counter atomic), and the pointer is only
// followed while the job is alive (see `for_each_task`).
unsafe impl Send for JobPtr {}

#[derive(Default)]
struct State {
    /// A job offered and not yet taken.
    offered: Option<JobPtr>,
    /// The helper is running a job's tasks.
    busy: bool,
    /// A task panicked on the helper.
    panicked: bool,
}

struct Helper {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    /// The process the helper thread runs in: after a `fork` the child has no helper thread.
    pid: u32,
}

impl Helper {
    /// The helper, started on first use; `None` on a single core, when the thread could not
    /// be started, or in a child process forked after it was.
    fn get() -> Option<&'static Helper> {
        static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();
        let helper = (*HELPER.get_or_init(Self::start))?;
        (helper.pid == std::process::id()).then_some(helper)
    }

    fn start() -> Option<&'static Helper> {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return None;
        }
        let helper: &'static Helper = Box::leak(Box::new(Helper {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            pid: std::process::id(),
        }));
        let spawned = std::thread::Builder::new().name("sigil-atr".into()).spawn(move || helper.serve());
        spawned.ok().map(|_| helper)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few flags, consistent at every unlock: a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers `job` to the helper; false when the helper is taken by another caller (which then
    /// leaves this job to its caller alone).
    ///
    /// # Safety
    /// When this returns true, `job` must stay alive until [`Helper::withdraw`] returns.
    unsafe fn offer(&self, job: &Job<'_>) -> bool {
        let mut st = self.lock();
        if st.offered.is_some() || st.busy {
            return false;
        }
        st.offered = Some(JobPtr((job as *const Job<'_>).cast()));
        drop(st);
        self.work.notify_one();
        true
    }

    /// Takes back the offered job if the helper has not started it, else waits until the helper
    /// has finished its tasks of it. Returns whether one of them panicked.
    fn withdraw(&self) -> bool {
        let mut st = self.lock();
        st.offered = None;
        while st.busy {
            st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        std::mem::take(&mut st.panicked)
    }

    /// The helper thread: waits for a job, runs its tasks, reports back.
    fn serve(&self) {
        let mut st = self.lock();
        loop {
            let Some(job) = st.offered.take() else {
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            st.busy = true;
            drop(st);
            // SAFETY: the job stays alive while `busy` is set (its caller waits for that in
            // `withdraw`).
            let ran = catch_unwind(AssertUnwindSafe(|| unsafe { &*job.0 }.run()));
            st = self.lock();
            st.busy = false;
            st.panicked |= ran.is_err();
            self.done.notify_all();
        }
    }
}
