//! The socket calls the supervisor performs for the tree, and the write of
//! `sendmmsg`'s results into the caller's memory.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `connect(fd, addr)`, with the address bytes as the caller gave them.
pub fn connect(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    // SAFETY: addr is valid for addr.len() bytes; the kernel copies it.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            addr.as_ptr().cast(),
            addr.len() as libc::socklen_t,
        )
    };
    cvt(r.into()).map(|_| ())
}

/// `bind(fd, addr)`.
pub fn bind(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    // SAFETY: as for connect.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            addr.as_ptr().cast(),
            addr.len() as libc::socklen_t,
        )
    };
    cvt(r.into()).map(|_| ())
}

/// `listen(fd, backlog)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }.into()).map(|_| ())
}

/// An integer socket option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid for writing, len holds v's size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    cvt(r.into()).map(|_| v)
}

/// `getsockname` (`peer`: `getpeername`): the address bytes.
pub fn sockname(fd: BorrowedFd<'_>, peer: bool) -> io::Result<Vec<u8>> {
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: p and len describe ss, valid for writing.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    };
    cvt(r.into())?;
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: ss is len bytes of initialised plain data (len bounded above).
    let bytes = unsafe {
        std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len)
    };
    Ok(bytes.to_vec())
}

/// One message to send: destination (may be empty), data, ancillary data.
pub struct Message<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
    pub control: &'a [u8],
}

/// `sendmsg(fd, msg, flags)`: the number of bytes sent.
pub fn sendmsg(fd: BorrowedFd<'_>, m: &Message<'_>, flags: i32) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: m.data.as_ptr() as *mut libc::c_void,
        iov_len: m.data.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid value.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    if !m.name.is_empty() {
        hdr.msg_name = m.name.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = m.name.len() as libc::socklen_t;
    }
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if !m.control.is_empty() {
        hdr.msg_control = m.control.as_ptr() as *mut libc::c_void;
        hdr.msg_controllen = m.control.len() as _;
    }
    // SAFETY: every pointer in hdr refers to memory borrowed for this call
    // (name, data, control, iov); the kernel only reads them.
    let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &hdr, flags) };
    cvt(r as libc::c_long).map(|n| n as usize)
}

/// Writes `buf` into process `pid`'s memory at `addr` (the supervisor is
/// its tracer): what `sendmmsg` stores in each `msg_len`.
pub fn write_process_memory(pid: i32, addr: u64, buf: &[u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local describes buf (read only by the kernel); remote is an
    // address in the other process, checked by the kernel.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    cvt(n as libc::c_long).map(|n| n as usize)
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) }).map(|_| ())
}

/// `fchmodat(dirfd, name, mode, 0)`.
pub fn fchmodat(dirfd: BorrowedFd<'_>, name: &std::ffi::CStr, mode: u32) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    let r = unsafe { libc::fchmodat(dirfd.as_raw_fd(), name.as_ptr(), mode, 0) };
    cvt(r.into()).map(|_| ())
}
