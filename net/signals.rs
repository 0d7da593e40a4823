//! SIGTERM and SIGINT as events of the loop's poll. A signal handler may do almost nothing
//! safely, so it writes the signal's number into a pipe whose read end the loop polls like a
//! socket (the self-pipe trick); everything else happens on the loop thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The pipe's write end, for the handler; -1 until installed.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signo: libc::c_int) {
    // write(2) is async-signal-safe; errno is saved because the interrupted code may be about
    // to read it. A full pipe drops the byte, which is harmless: the loop is already woken.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = WRITE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = signo as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// The read end of the signal pipe; the handlers stay installed for the life of the process.
pub struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
}

/// The signals that stop the server: drain on the first, exit on the second.
pub const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

impl Signals {
    /// Installs the handlers for [`STOP_SIGNALS`]. Once per process.
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0; 2];
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        if WRITE_FD
            .compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(io::Error::other("signal handlers are already installed"));
        }
        for signo in STOP_SIGNALS {
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                // Restarted system calls: the handler must not make other threads' reads fail.
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signo, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Signals {
            read,
            _write: write,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The signals received since the last call, in order.
    pub fn take(&self) -> Vec<libc::c_int> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                // Empty: the poll is edge-triggered, so it had to be read to the end.
                return got;
            }
            got.extend(buf[..n as usize].iter().map(|&b| libc::c_int::from(b)));
        }
    }
}

/// `SIGTERM`, `SIGINT` or the number.
pub fn name(signo: libc::c_int) -> String {
    match signo {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        n => format!("signal {n}"),
    }
}
