//! The only `unsafe` in the gateway: adopting the listening sockets another process
//! sent us, and sending a signal to the process being replaced. Both are thin calls
//! whose soundness rests on where the descriptor or pid came from, said at each call.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

/// Takes ownership of a listening socket received over the upgrade socket.
///
/// The caller passes each received descriptor exactly once and keeps no copy of the
/// number, so the returned listener is its only owner (it closes it when dropped).
pub(super) fn adopt_received(fd: RawFd) -> TcpListener {
    // SAFETY: `fd` was created in this process by recvmsg(SCM_RIGHTS) (Pingora's
    // `Fds::get_from_sock`), nothing else owns or closes it, and the caller adopts it
    // once. If it is not a TCP listener, using it fails with an error; it is not UB.
    unsafe { TcpListener::from_raw_fd(fd) }
}

/// Whether a process with this pid exists (and may be signalled by us).
pub(super) fn process_exists(pid: i32) -> bool {
    // 0 and negative pids name process groups.
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks for the process; no memory is involved.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Sends SIGQUIT (Pingora's "hand over your listeners and drain") to `pid`.
pub(super) fn send_sigquit(pid: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes plain integers; no memory is involved.
    let rc = unsafe { libc::kill(pid, libc::SIGQUIT) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
