//! File descriptors: every connection is one, so the process's `RLIMIT_NOFILE` bounds the
//! connections it can hold. At start-up the soft limit is raised to the hard limit (a common
//! default soft limit is 1024, far below a service's needs), and the connection limit is
//! derived from what is left after the descriptors the process needs for itself.

/// Descriptors kept for everything but connections: stdio, the listeners, epoll and its waker,
/// one read-only SQLite connection per worker thread and per evolution run database, the spare
/// descriptor (see [`Spare`]), and slack for the allocator's and Vulkan's own files.
pub const RESERVED: u64 = 128;

/// The soft limit before and after raising it, and the hard limit.
#[derive(Clone, Copy, Debug)]
pub struct FdLimits {
    pub before: u64,
    pub soft: u64,
    pub hard: u64,
}

impl FdLimits {
    /// How many connections fit: `wanted`, or fewer when the descriptors run out first.
    pub fn connections(&self, wanted: usize) -> usize {
        wanted.min(self.soft.saturating_sub(RESERVED) as usize)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit.
pub fn raise_limit() -> std::io::Result<FdLimits> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit struct we own; raising the soft limit up to the
        // hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(FdLimits {
        before,
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// One descriptor held back so that a connection the kernel accepted while the process was out
/// of descriptors can still be taken and closed, instead of waiting in the backlog unanswered.
pub struct Spare(Option<std::fs::File>);

impl Spare {
    pub fn new() -> Spare {
        Spare(std::fs::File::open("/dev/null").ok())
    }

    /// Frees the spare descriptor for `f` (which accepts and closes one connection), then
    /// takes it again.
    pub fn lend<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.0 = None;
        let result = f();
        self.0 = std::fs::File::open("/dev/null").ok();
        result
    }
}

impl Default for Spare {
    fn default() -> Self {
        Spare::new()
    }
}

/// Whether an accept failed for lack of descriptors (this process's or the system's).
pub fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}
