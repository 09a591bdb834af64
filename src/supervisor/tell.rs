//! Telling a caller something: one line written to its standard error.
//!
//! A refused call fails with `EPERM` and nothing more; a program reading
//! its tool's output then sees "Operation not permitted" and may retry
//! around the refusal. The judge decides the text; this module only
//! delivers it, and never waits:
//!
//! - the caller's fd 2 is taken with `pidfd_getfd` (the supervisor is the
//!   tracer of the whole tree): the same open file description, so the line
//!   goes exactly where the caller's own messages go. Nothing is written
//!   unless that description is open for writing, so the supervisor never
//!   writes anything the caller could not write itself;
//! - a regular file is written through that description (its offset and
//!   `O_APPEND` are the caller's: the line is not overwritten by the
//!   caller's next message, nor does it overwrite anything);
//! - a pipe, a FIFO or a terminal is reopened through `/proc/self/fd` with
//!   `O_NONBLOCK` (a description of its own: the caller's flags are left
//!   alone) and written once; a full pipe, a FIFO with no reader or a
//!   stopped terminal drops the line (`EAGAIN`, `ENXIO`);
//! - a socket is sent to with `MSG_DONTWAIT`;
//! - anything else (another character device, a directory) is left alone;
//! - when the description is the file the supervisor's own stderr is (the
//!   same terminal or pipe: device, inode and device number), and the
//!   supervisor shows its own line there, nothing is written: a human would
//!   read the line twice.
//!
//! The line is at most [`MAX_LINE`] bytes, below `PIPE_BUF`, so a pipe takes
//! it whole or not at all, and it holds no control character: text that
//! does is shown escaped ([`crate::escape::text`]).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use super::sys;
use super::Caller;

/// Longest line delivered, newline included (below `PIPE_BUF`, 4096).
pub const MAX_LINE: usize = 4000;

/// What became of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// Written to the caller's stderr.
    Written,
    /// Not written: the caller's stderr is the supervisor's own.
    Shown,
    /// Not written, and why.
    Dropped(&'static str),
}

/// (device, inode, device number) of an open file.
type FileId = (u64, u64, u64);

fn file_id(st: &libc::stat) -> FileId {
    (st.st_dev, st.st_ino, st.st_rdev)
}

/// The file the supervisor's own stderr is, read once.
fn own_stderr() -> Option<FileId> {
    static OWN: OnceLock<Option<FileId>> = OnceLock::new();
    *OWN.get_or_init(|| {
        // A closed fd 2 fails with EBADF.
        sys::fstat(std::io::stderr().as_fd())
            .ok()
            .map(|st| file_id(&st))
    })
}

/// `text` as one line: escaped if it holds a control or invisible
/// character, cut to [`MAX_LINE`] bytes at a character boundary, ending
/// with a newline.
pub fn line(text: &str) -> Vec<u8> {
    let mut s = crate::escape::text(text);
    if s.len() >= MAX_LINE {
        let mut end = MAX_LINE - 4;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s.push('\n');
    s.into_bytes()
}

fn dropped(e: &io::Error) -> Told {
    Told::Dropped(match e.raw_os_error() {
        Some(libc::EAGAIN) => "it would block (a full pipe, a stopped terminal)",
        Some(libc::ENXIO) => "a FIFO nobody reads",
        Some(libc::EPIPE) => "a pipe nobody reads",
        Some(libc::EBADF) => "no fd 2",
        Some(libc::EPERM) | Some(libc::EACCES) => "no permission",
        Some(libc::ESRCH) => "the caller is gone",
        _ => "it could not be written",
    })
}

/// A new, non-blocking, write-only description of what `fd` is open on.
fn reopen_nonblocking(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let link =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)?;
    sys::openat(
        super::notify::at_fdcwd(),
        &link,
        libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
    )
}

/// Writes `text` as one line to `caller`'s stderr (see the module
/// documentation), unless `unless_ours` and that is the supervisor's own
/// stderr. Never blocks.
pub fn tell(caller: &Caller, text: &str, unless_ours: bool) -> Told {
    match deliver(caller, &line(text), unless_ours) {
        Ok(t) => t,
        Err(e) => dropped(&e),
    }
}

fn deliver(caller: &Caller, line: &[u8], unless_ours: bool) -> io::Result<Told> {
    // The thread itself (its fd table may be its own), else its process.
    let pidfd = sys::pidfd_open(caller.tid, libc::PIDFD_THREAD)
        .or_else(|_| sys::pidfd_open(caller.pid, 0))?;
    let fd = sys::pidfd_getfd(pidfd.as_fd(), 2)?;
    let fl = sys::getfl(fd.as_fd())?;
    if fl & libc::O_PATH != 0 || fl & libc::O_ACCMODE == libc::O_RDONLY {
        return Ok(Told::Dropped("fd 2 is not open for writing"));
    }
    let st = sys::fstat(fd.as_fd())?;
    if unless_ours && own_stderr() == Some(file_id(&st)) {
        return Ok(Told::Shown);
    }
    let written = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => sys::write(fd.as_fd(), line)?,
        libc::S_IFIFO => sys::write(reopen_nonblocking(fd.as_fd())?.as_fd(), line)?,
        libc::S_IFCHR if sys::isatty(fd.as_fd()) => {
            sys::write(reopen_nonblocking(fd.as_fd())?.as_fd(), line)?
        }
        libc::S_IFSOCK => sys::send_nowait(fd.as_fd(), line)?,
        _ => {
            return Ok(Told::Dropped(
                "fd 2 is not a file, pipe, terminal or socket",
            ))
        }
    };
    Ok(if written == line.len() {
        Told::Written
    } else {
        Told::Dropped("only part of the line was taken")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A child that sleeps with `stderr` as its fd 2 (a descendant of the
    /// test: `pidfd_getfd` is allowed on it).
    fn child(stderr: Stdio) -> (Child, Caller) {
        let c = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let pid = c.id() as i32;
        (
            c,
            Caller {
                tid: pid,
                pid,
                ppid: 0,
            },
        )
    }

    fn pipe() -> (std::fs::File, std::fs::File) {
        let (r, w) = sys::pipe().unwrap();
        (std::fs::File::from(r), std::fs::File::from(w))
    }

    #[test]
    fn the_line_reaches_a_pipe_escaped() {
        let (mut r, w) = pipe();
        let (mut c, caller) = child(Stdio::from(w));
        let told = tell(&caller, "lexecon: blocked exec rm \x1b[2K x", false);
        c.kill().unwrap();
        c.wait().unwrap();
        assert_eq!(told, Told::Written);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "$'lexecon: blocked exec rm \\x1b[2K x'\n");
    }

    #[test]
    fn a_regular_file_gets_the_line_at_the_callers_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("err.txt");
        let f = std::fs::File::create(&p).unwrap();
        let (mut c, caller) = child(Stdio::from(f));
        assert_eq!(tell(&caller, "one", false), Told::Written);
        assert_eq!(tell(&caller, "two", false), Told::Written);
        c.kill().unwrap();
        c.wait().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn a_full_pipe_drops_the_line_at_once() {
        let (_r, w) = pipe();
        // Fill the pipe through a non-blocking description of its own.
        let nb = reopen_nonblocking(w.as_fd()).unwrap();
        let chunk = [b'x'; 4096];
        while sys::write(nb.as_fd(), &chunk).is_ok() {}
        let (mut c, caller) = child(Stdio::from(w));
        let t = Instant::now();
        let told = tell(&caller, "lexecon: blocked", false);
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(matches!(told, Told::Dropped(_)), "{told:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_read_only_stderr_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ro.txt");
        std::fs::write(&p, "keep\n").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let (mut c, caller) = child(Stdio::from(f));
        let told = tell(&caller, "lexecon: blocked", false);
        c.kill().unwrap();
        c.wait().unwrap();
        assert_eq!(told, Told::Dropped("fd 2 is not open for writing"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "keep\n");
    }

    #[test]
    fn the_supervisors_own_stderr_is_not_written_twice() {
        let Ok(dup) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return;
        };
        let f = std::fs::File::from(dup);
        let (mut c, caller) = child(Stdio::from(f));
        let told = tell(&caller, "lexecon: blocked", true);
        c.kill().unwrap();
        c.wait().unwrap();
        assert_eq!(told, Told::Shown);
    }

    #[test]
    fn long_lines_are_cut_below_pipe_buf() {
        let l = line(&"é".repeat(5000));
        assert!(l.len() <= MAX_LINE && l.ends_with("…\n".as_bytes()));
        assert!(std::str::from_utf8(&l).is_ok());
    }
}
