//! What the supervisor reads about a tracee from `/proc`: its thread group
//! and parent, umask and credentials, working directory, command line, and
//! the identity (device, inode, content hash) of files it opens or runs.
//!
//! Anything read here about a notifying thread is trusted only after the
//! notification loop re-checks `NOTIF_ID_VALID`.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::lasting::LastingHashes;
use super::sys;

/// The fields of `/proc/TID/status` the supervisor uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub tgid: i32,
    pub ppid: i32,
    /// The pid of the process tracing this thread (0: none).
    pub tracer: i32,
    /// The state letter (`R`, `S`, `Z` for a zombie, …).
    pub state: char,
    pub umask: Option<u32>,
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
}

/// Parses the text of a `status` file.
pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    let ids = |v: &str| -> [u32; 4] {
        let mut out = [0u32; 4];
        for (slot, f) in out.iter_mut().zip(v.split_whitespace()) {
            *slot = f.parse().unwrap_or(u32::MAX);
        }
        out
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Tgid" => s.tgid = v.parse().unwrap_or(0),
            "PPid" => s.ppid = v.parse().unwrap_or(0),
            "TracerPid" => s.tracer = v.parse().unwrap_or(-1),
            "State" => s.state = v.chars().next().unwrap_or('?'),
            "Umask" => s.umask = u32::from_str_radix(v, 8).ok(),
            "Uid" => s.uid = ids(v),
            "Gid" => s.gid = ids(v),
            "Groups" => {
                s.groups = v
                    .split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect()
            }
            _ => {}
        }
    }
    s
}

/// Reads `/proc/TID/status`.
pub fn status(tid: i32) -> io::Result<Status> {
    let buf = read_small(&format!("/proc/{tid}/status"))?;
    let text = String::from_utf8_lossy(&buf);
    let s = parse_status(&text);
    if s.tgid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{tid}/status has no Tgid"),
        ));
    }
    Ok(s)
}

/// Reads a small `/proc` file whole.
fn read_small(path: &str) -> io::Result<Vec<u8>> {
    read_capped(path, usize::MAX)
}

/// Reads a `/proc` file to its end, or to one byte past `cap` (so that the
/// caller can tell it was longer). procfs reports a size of 0, so `fs::read`
/// and `read_to_end` would `statx` it and then read in small steps (32 bytes
/// first, then doubling: eight reads of a 2 KiB command line or environment,
/// three of `fdinfo`); a first buffer of 4 KiB, doubled when full, takes one
/// read of most such files and the one that finds the end (the buffer is
/// zeroed: a first one of 16 KiB showed up in profiles of exec-heavy runs).
fn read_capped(path: &str, cap: usize) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let limit = cap.saturating_add(1);
    let mut buf = vec![0u8; limit.min(4096)];
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= limit {
                break;
            }
            buf.resize(len.saturating_mul(2).min(limit), 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// The umask of `tid`, for a file or directory the supervisor creates for
/// it; when it cannot be read, the strictest one (`077`).
pub fn umask(tid: i32) -> u32 {
    status(tid).ok().and_then(|s| s.umask).unwrap_or(0o077)
}

/// Reads a `/proc/PID/…` symlink (`cwd`, `exe`, `fd/N`).
pub fn readlink(pid: i32, what: &str) -> io::Result<PathBuf> {
    let link = CString::new(format!("/proc/{pid}/{what}")).map_err(io::Error::other)?;
    sys::readlinkat(sys::at_fdcwd(), &link).map(|b| PathBuf::from(OsString::from_vec(b)))
}

/// Reads `/proc/PID/cmdline` as argv, capped at `cap` bytes (longer → error).
pub fn cmdline(pid: i32, cap: usize) -> io::Result<Vec<OsString>> {
    let mut buf = read_capped(&format!("/proc/{pid}/cmdline"), cap)?;
    if buf.len() > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("command line longer than {cap} bytes"),
        ));
    }
    if buf.last() == Some(&0) {
        buf.pop();
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    Ok(buf
        .split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect())
}

/// Environment variables that make the dynamic loader (or the C library)
/// load code of the caller's choosing into a program: with any of them set,
/// what a process runs is not only its program.
pub const INJECTING_VARIABLES: [&str; 4] =
    ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "GCONV_PATH"];

/// Whether the environment `pid` was started with (read at its exec, before
/// it ran) asks for other code to be loaded into its program: the first
/// such variable set to a non-empty value, or why the environment could not
/// be read. `None`: nothing is injected this way.
pub fn injection(pid: i32, cap: usize) -> Option<String> {
    let read = || -> io::Result<Vec<u8>> {
        let buf = read_capped(&format!("/proc/{pid}/environ"), cap)?;
        if buf.len() > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("environment longer than {cap} bytes"),
            ));
        }
        Ok(buf)
    };
    match read() {
        Ok(env) => injecting_variable(&env).map(str::to_owned),
        Err(e) => Some(format!("the environment could not be read: {e}")),
    }
}

/// The first of [`INJECTING_VARIABLES`] set to a non-empty value in a
/// NUL-separated environment block.
pub fn injecting_variable(env: &[u8]) -> Option<&'static str> {
    env.split(|&b| b == 0).find_map(|kv| {
        INJECTING_VARIABLES.iter().copied().find(|name| {
            kv.strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
                .is_some_and(|v| !v.is_empty())
        })
    })
}

/// (device, inode) of the program `pid` runs.
pub fn exe_file(pid: i32) -> io::Result<(u64, u64)> {
    let st = exe_stat(pid)?;
    Ok((st.st_dev, st.st_ino))
}

/// The `stat` of the program `pid` runs: one `stat` of the magic link
/// `/proc/PID/exe`, which leads to the very file (as opening it would,
/// without the open and the close).
pub fn exe_stat(pid: i32) -> io::Result<libc::stat> {
    let path = CString::new(format!("/proc/{pid}/exe")).map_err(io::Error::other)?;
    sys::statat(sys::at_fdcwd(), &path)
}

/// What was really opened or executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub sha256: Option<[u8; 32]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    /// The version `st` describes.
    pub fn of(st: &libc::stat) -> Version {
        Version {
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// SHA-256 of program files, cached by (device, inode) and invalidated when
/// size, mtime or ctime change (ctime cannot be set from user space, so a
/// file rewritten with write(2) always misses the cache).
///
/// Metadata does not see every change: a write through a shared writable
/// mapping that is already dirty changes the bytes and none of size, mtime
/// or ctime. So a file the tree could ever write to — one it was given a
/// writable descriptor for ([`HashCache::written`]), or an unlinked one (a
/// memfd, an `O_TMPFILE`, a deleted file) — is never answered from the
/// cache: it is hashed again each time. At the exec event the kernel
/// refuses every writer of the file being executed (`ETXTBSY`), so the hash
/// taken there is the hash of the bytes that run.
/// (device, inode) → (version hashed, SHA-256).
type Hashes = HashMap<(u64, u64), (Version, [u8; 32])>;

#[derive(Default)]
pub struct HashCache {
    map: Mutex<Hashes>,
    /// Files the tree holds or held a writable descriptor for; `None` once
    /// there were too many to track (then no file is answered from the
    /// cache).
    written: Mutex<Option<std::collections::HashSet<(u64, u64)>>>,
    /// Set once `written` overflowed.
    untrusted: std::sync::atomic::AtomicBool,
    /// Hashes kept across runs, for files the tree cannot write.
    lasting: Option<std::sync::Arc<LastingHashes>>,
}

/// Most files tracked as written before the cache stops being used at all.
const WRITTEN_MAX: usize = 1 << 20;

/// Most entries kept; the cache is cleared when full (bounded memory).
const HASH_CACHE_MAX: usize = 4096;
/// Files larger than this are not hashed (recorded without a hash).
pub const HASH_MAX_BYTES: i64 = 512 * 1024 * 1024;

impl HashCache {
    /// A cache that also answers from, and adds to, the hashes of earlier
    /// runs (`None`: this run's only).
    pub fn with_lasting(lasting: Option<std::sync::Arc<LastingHashes>>) -> HashCache {
        HashCache {
            lasting,
            ..HashCache::default()
        }
    }

    /// Starts the cache with hashes taken before the command started.
    /// Each is used as the cache's own are: for that file at that version,
    /// and only while the tree could not write it.
    pub fn seed(&self, pre: &Prehashed) {
        for &(key, version, hash) in &pre.entries {
            self.remember(key, version, hash);
        }
    }

    /// The tree can write to the file open as `fd` (it was given a writable
    /// descriptor of it): its hash is never taken from the cache again.
    pub fn written(&self, fd: BorrowedFd<'_>) {
        use std::sync::atomic::Ordering;
        let Ok(st) = sys::fstat(fd) else {
            // Unknown: trust no cached hash.
            self.untrusted.store(true, Ordering::Relaxed);
            return;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return;
        }
        let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let set = w.get_or_insert_with(Default::default);
        if set.len() >= WRITTEN_MAX {
            self.untrusted.store(true, Ordering::Relaxed);
            set.clear();
        }
        set.insert((st.st_dev, st.st_ino));
    }

    /// Whether a cached hash of `st` may be used.
    fn cacheable(&self, st: &libc::stat) -> bool {
        if st.st_nlink == 0 || self.untrusted.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let w = self.written.lock().unwrap_or_else(|p| p.into_inner());
        !w.as_ref()
            .is_some_and(|set| set.contains(&(st.st_dev, st.st_ino)))
    }

    /// Identity of the file open as `fd` (any mode, `O_PATH` included); its
    /// content hash when it is a regular file that can be read.
    pub fn identify(&self, fd: BorrowedFd<'_>) -> io::Result<Identity> {
        let st = sys::fstat(fd)?;
        self.identify_stat(fd, &st)
    }

    /// The identity of the file `st` describes when its hash can be
    /// answered from the cache (a regular file the tree could never write,
    /// hashed at this very version); `None` otherwise, and then the file
    /// must be opened and identified ([`HashCache::identify`]). For a `stat`
    /// of a name this is what an open of that name and an `fstat` of the
    /// descriptor would give at that moment, without the open, the `fstat`
    /// and the close.
    pub fn cached(&self, st: &libc::stat) -> Option<Identity> {
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size > HASH_MAX_BYTES {
            return None;
        }
        if !self.cacheable(st) {
            return None;
        }
        let version = Version::of(st);
        match self.lock().get(&(st.st_dev, st.st_ino)) {
            Some((v, h)) if *v == version => Some(Identity {
                dev: st.st_dev,
                ino: st.st_ino,
                sha256: Some(*h),
            }),
            _ => None,
        }
    }

    /// As [`HashCache::identify`], with `st` the `fstat` of `fd` the
    /// caller has just taken (not a `stat` of a name, which may lead
    /// elsewhere by now).
    pub fn identify_stat(&self, fd: BorrowedFd<'_>, st: &libc::stat) -> io::Result<Identity> {
        let mut id = Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            sha256: None,
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size > HASH_MAX_BYTES {
            return Ok(id);
        }
        let version = Version::of(st);
        let key = (st.st_dev, st.st_ino);
        let cacheable = self.cacheable(st);
        if cacheable {
            if let Some((v, h)) = self.lock().get(&key) {
                if *v == version {
                    id.sha256 = Some(*h);
                    return Ok(id);
                }
            }
        }
        // A version that may outlast the run (see `lasting`): from an
        // earlier run's hash when there is one.
        let lasting = match &self.lasting {
            Some(l) if cacheable => sys::fstatfs(fd)
                .ok()
                .and_then(|fs| l.version(st, &fs))
                .map(|v| (l, v)),
            _ => None,
        };
        if let Some((l, v)) = &lasting {
            if let Some(hash) = l.get(v) {
                self.remember(key, version, hash);
                id.sha256 = Some(hash);
                return Ok(id);
            }
        }
        // Reopen for reading through our own fd table: works for O_PATH fds
        // and needs no path.
        let path =
            CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)?;
        let file = match sys::openat(
            sys::at_fdcwd(),
            &path,
            libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK,
            0,
        ) {
            Ok(f) => f,
            // Execute-only programs cannot be read: no hash, not an error.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Ok(id),
            Err(e) => return Err(e),
        };
        let hash = hash_fd(file)?;
        if cacheable {
            self.remember(key, version, hash);
        }
        if let Some((l, v)) = lasting {
            l.add(v, hash);
        }
        id.sha256 = Some(hash);
        Ok(id)
    }

    fn remember(&self, key: (u64, u64), version: Version, hash: [u8; 32]) {
        let mut map = self.lock();
        if map.len() >= HASH_CACHE_MAX {
            map.clear();
        }
        map.insert(key, (version, hash));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hashes> {
        // A panic while holding the lock leaves a map that is still
        // consistent (inserts are single operations).
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn hash_fd(fd: OwnedFd) -> io::Result<[u8; 32]> {
    hash_file(&mut fs::File::from(fd))
}

/// SHA-256 of what `file` reads from its offset to its end.
fn hash_file(file: &mut fs::File) -> io::Result<[u8; 32]> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut h = Sha256::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Hashes taken before the command started, to seed its run's
/// [`HashCache`] (see [`super::prehash`]).
#[derive(Debug, Default)]
pub struct Prehashed {
    entries: Vec<((u64, u64), Version, [u8; 32])>,
}

impl Prehashed {
    pub fn push(&mut self, entry: ((u64, u64), Version, [u8; 32])) {
        self.entries.push(entry);
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The hash taken of the file (device, inode), if any.
    #[cfg(test)]
    pub fn entry(&self, key: (u64, u64)) -> Option<[u8; 32]> {
        self.entries.iter().find(|e| e.0 == key).map(|e| e.2)
    }
}

/// The (device, inode), version and SHA-256 of the regular file `file`,
/// when it is one the cache may hold and did not change while it was read
/// (same version before and after).
pub fn hash_versioned(mut file: fs::File) -> Option<((u64, u64), Version, [u8; 32])> {
    use std::os::fd::AsFd;
    let before = sys::fstat(file.as_fd()).ok()?;
    if before.st_mode & libc::S_IFMT != libc::S_IFREG || before.st_size > HASH_MAX_BYTES {
        return None;
    }
    let hash = hash_file(&mut file).ok()?;
    let after = sys::fstat(file.as_fd()).ok()?;
    let version = Version::of(&before);
    (version == Version::of(&after)
        && (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino))
        .then_some(((before.st_dev, before.st_ino), version, hash))
}

/// Opens `/proc/PID/exe` (the program the process really runs).
pub fn open_exe(pid: i32) -> io::Result<OwnedFd> {
    let path = CString::new(format!("/proc/{pid}/exe")).map_err(io::Error::other)?;
    sys::openat(sys::at_fdcwd(), &path, libc::O_PATH, 0)
}

/// Duplicates a borrowed fd into an owned one (close-on-exec).
pub fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// Whether `tid` is one of this process's own threads.
pub fn is_own_task(tid: i32) -> bool {
    tid > 0 && fs::symlink_metadata(format!("/proc/self/task/{tid}")).is_ok()
}

/// The open flags of descriptor `fd` of process `pid` (`/proc/PID/fdinfo/FD`).
pub fn fd_flags(pid: i32, fd: i32) -> io::Result<i32> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let buf = read_small(&format!("/proc/{pid}/fdinfo/{fd}"))?;
    String::from_utf8_lossy(&buf)
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| i32::from_str_radix(v.trim(), 8).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no flags in /proc/{pid}/fdinfo/{fd}"),
            )
        })
}

/// Every process (thread group leader) listed in `/proc`.
pub fn processes() -> io::Result<Vec<i32>> {
    Ok(fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// The process group of `pid` (field 5 of `/proc/PID/stat`).
pub fn pgid(pid: i32) -> io::Result<i32> {
    let buf = read_small(&format!("/proc/{pid}/stat"))?;
    let text = String::from_utf8_lossy(&buf);
    // The command name (field 2) may contain spaces and ')': parse after the
    // last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .nth(2)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot parse /proc/{pid}/stat"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// The `stat` of `/proc/PID/exe` is the program file's, as through an
    /// open of it.
    #[test]
    fn exe_file_is_the_program_file() {
        let fd = open_exe(std::process::id() as i32).unwrap();
        let st = sys::fstat(fd.as_fd()).unwrap();
        let exe = exe_file(std::process::id() as i32).unwrap();
        assert_eq!(exe, (st.st_dev, st.st_ino));
        let own = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(exe, (own.dev(), own.ino()));
        assert!(exe_file(i32::MAX).is_err());
    }

    #[test]
    fn small_proc_files_are_read_whole() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir().join(format!("lexecon-procfs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join("f"))
            .unwrap();
        let pid = crate::os::pid();
        let flags = fd_flags(pid, f.as_raw_fd()).unwrap();
        assert_eq!(flags & libc::O_ACCMODE, libc::O_WRONLY);
        assert_ne!(flags & libc::O_APPEND, 0);
        assert_ne!(flags & libc::O_NOFOLLOW, 0);
        assert!(fd_flags(pid, -1).is_err());
        assert_eq!(status(pid).unwrap().tgid, pid);
        assert_eq!(pgid(pid).unwrap(), crate::os::pgrp());
        // A file longer than the first buffer is read to its end.
        let maps = read_small(&format!("/proc/{pid}/smaps")).unwrap();
        assert!(maps.len() > 4096, "{}", maps.len());
        assert_eq!(maps.last(), Some(&b'\n'));
        // Capped: one byte past the cap, whatever the first buffer's size.
        for cap in [0, 10, 4095] {
            let capped = read_capped(&format!("/proc/{pid}/smaps"), cap).unwrap();
            assert_eq!(capped.len(), cap + 1, "cap {cap}");
        }
        // Past the first buffer: environ made longer than it.
        let long = "x".repeat(20 * 1024);
        let child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .env("LEXECON_TEST_LONG", &long)
            .spawn()
            .unwrap();
        let cpid = child.id() as i32;
        // The parent resumes when the child's exec has replaced its memory,
        // a moment before the kernel has put the new environment in place.
        let mut env = Vec::new();
        for _ in 0..200 {
            env = read_capped(&format!("/proc/{cpid}/environ"), 1 << 21).unwrap();
            if !env.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(env.len() > 20 * 1024, "{}", env.len());
        assert!(env.ends_with(b"\0"));
        let env_capped = read_capped(&format!("/proc/{cpid}/environ"), 16 * 1024 + 5).unwrap();
        assert_eq!(env_capped.len(), 16 * 1024 + 6);
        assert_eq!(&env_capped[..], &env[..16 * 1024 + 6]);
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        let own = cmdline(pid, 1 << 21).unwrap();
        assert_eq!(own, std::env::args_os().collect::<Vec<_>>());
        assert!(cmdline(pid, 3).is_err(), "longer than the cap");
        drop(f);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_fields_are_parsed() {
        let s = parse_status(
            "Name:\tcat\nUmask:\t0022\nTgid:\t42\nPid:\t43\nPPid:\t7\nTracerPid:\t9\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\nGroups:\t10 20 \n",
        );
        assert_eq!(s.tgid, 42);
        assert_eq!(s.ppid, 7);
        assert_eq!(s.tracer, 9);
        assert_eq!(s.umask, Some(0o022));
        assert_eq!(s.uid, [1000, 1001, 1002, 1003]);
        assert_eq!(s.gid, [5, 6, 7, 8]);
        assert_eq!(s.groups, vec![10, 20]);
    }

    #[test]
    fn own_status_and_pgid() {
        let (pid, pgrp) = (crate::os::pid(), crate::os::pgrp());
        let s = status(sys::gettid()).unwrap();
        assert_eq!(s.tgid, pid);
        assert_eq!(pgid(pid).unwrap(), pgrp);
        assert!(is_own_task(sys::gettid()));
        assert!(!is_own_task(1));
    }

    /// A write through a shared mapping that is already dirty changes the
    /// bytes but not size, mtime or ctime: a file the tree was given a
    /// writable descriptor for is hashed again every time.
    #[test]
    fn hash_cache_sees_writes_through_a_shared_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prog");
        fs::write(&p, vec![b'a'; 4096]).unwrap();
        let rw = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let mut map = sys::SharedMapping::new(rw.as_fd(), 4096).unwrap();
        map.set(0, b'b');
        let ro = fs::File::open(&p).unwrap();
        let cache = HashCache::default();
        let first = cache.identify(ro.as_fd()).unwrap().sha256;
        let before = fs::metadata(&p).unwrap();
        // The page is already dirty: no fault, no mtime.
        map.set(0, b'c');
        let after = fs::metadata(&p).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (before.mtime_nsec(), before.ctime_nsec(), before.size()),
            (after.mtime_nsec(), after.ctime_nsec(), after.size()),
            "the write changed no metadata"
        );
        let mut c = vec![b'a'; 4096];
        c[0] = b'c';
        let truth: [u8; 32] = Sha256::digest(&c).into();
        // Answered from the cache, the hash lies (the attack)...
        assert_ne!(cache.identify(ro.as_fd()).unwrap().sha256, Some(truth));
        assert_ne!(first, Some(truth));
        // ...unless the file is known to be writable by the tree.
        cache.written(rw.as_fd());
        assert_eq!(cache.identify(ro.as_fd()).unwrap().sha256, Some(truth));
        drop(map);
    }

    #[test]
    fn hash_cache_sees_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prog");
        fs::write(&p, b"one").unwrap();
        let cache = HashCache::default();
        let f = fs::File::open(&p).unwrap();
        let a = cache.identify(f.as_fd()).unwrap();
        assert_eq!(a.sha256.unwrap(), <[u8; 32]>::from(Sha256::digest(b"one")));
        std::thread::sleep(std::time::Duration::from_millis(5));
        fs::write(&p, b"two").unwrap();
        let b = cache.identify(f.as_fd()).unwrap();
        assert_eq!(b.sha256.unwrap(), <[u8; 32]>::from(Sha256::digest(b"two")));
        assert_eq!((a.dev, a.ino), (b.dev, b.ino));
    }

    /// A `stat` alone finds a hash only for the version that was hashed,
    /// and never for a file the tree could write or one that is unlinked.
    #[test]
    fn cached_hashes_by_stat_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prog");
        fs::write(&p, b"one").unwrap();
        let cache = HashCache::default();
        let stat_of = || {
            let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            sys::statat(sys::at_fdcwd(), &c).unwrap()
        };
        // Not hashed yet.
        assert_eq!(cache.cached(&stat_of()), None);
        let f = fs::File::open(&p).unwrap();
        let a = cache.identify(f.as_fd()).unwrap();
        assert_eq!(cache.cached(&stat_of()), Some(a));
        // Another version: not answered.
        std::thread::sleep(std::time::Duration::from_millis(5));
        fs::write(&p, b"two").unwrap();
        assert_eq!(cache.cached(&stat_of()), None);
        let b = cache.identify(f.as_fd()).unwrap();
        assert_eq!(cache.cached(&stat_of()), Some(b));
        // Writable by the tree: never answered again.
        let rw = fs::OpenOptions::new().write(true).open(&p).unwrap();
        cache.written(rw.as_fd());
        assert_eq!(cache.cached(&stat_of()), None);
        // Not a regular file.
        let d = CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(
            cache.cached(&sys::statat(sys::at_fdcwd(), &d).unwrap()),
            None
        );
        // Unlinked: never answered.
        let q = dir.path().join("other");
        fs::write(&q, b"three").unwrap();
        let g = fs::File::open(&q).unwrap();
        cache.identify(g.as_fd()).unwrap();
        assert!(cache.cached(&sys::fstat(g.as_fd()).unwrap()).is_some());
        fs::remove_file(&q).unwrap();
        assert_eq!(cache.cached(&sys::fstat(g.as_fd()).unwrap()), None);
    }

    /// Hashes taken before the run answer as the run's own do: for the
    /// version hashed only, and never once the tree could write the file.
    #[test]
    fn hashes_taken_ahead_hold_only_for_the_version_hashed_and_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (p, q) = (dir.path().join("prog"), dir.path().join("lib"));
        fs::write(&p, b"one").unwrap();
        fs::write(&q, b"lib").unwrap();
        let mut pre = Prehashed::default();
        for f in [&p, &q] {
            pre.push(hash_versioned(fs::File::open(f).unwrap()).unwrap());
        }
        // Not a regular file: nothing.
        assert!(hash_versioned(fs::File::open(dir.path()).unwrap()).is_none());

        let cache = HashCache::default();
        cache.seed(&pre);
        let (fp, fq) = (fs::File::open(&p).unwrap(), fs::File::open(&q).unwrap());
        let st = sys::fstat(fp.as_fd()).unwrap();
        let seeded = cache
            .cached(&st)
            .expect("answered from the hashes taken ahead");
        assert_eq!(
            seeded.sha256,
            Some(<[u8; 32]>::from(Sha256::digest(b"one")))
        );
        // Rewritten after it was hashed: the new bytes are hashed.
        std::thread::sleep(std::time::Duration::from_millis(5));
        fs::write(&p, b"two").unwrap();
        assert_eq!(cache.cached(&sys::fstat(fp.as_fd()).unwrap()), None);
        assert_eq!(
            cache.identify(fp.as_fd()).unwrap().sha256,
            Some(<[u8; 32]>::from(Sha256::digest(b"two")))
        );
        // Writable by the tree: the hash taken ahead is not used, even for
        // the version it was taken of (a write through a shared mapping
        // changes no metadata).
        assert!(cache.cached(&sys::fstat(fq.as_fd()).unwrap()).is_some());
        let rw = fs::OpenOptions::new().write(true).open(&q).unwrap();
        cache.written(rw.as_fd());
        assert_eq!(cache.cached(&sys::fstat(fq.as_fd()).unwrap()), None);
    }

    /// A directory on a filesystem whose files may keep a hash across runs
    /// (the temporary directory, else the source tree's).
    fn lasting_dir() -> tempfile::TempDir {
        let trusted = |d: tempfile::TempDir| {
            let f = fs::File::open(d.path()).ok()?;
            let fs = sys::fstatfs(f.as_fd()).ok()?;
            let st = sys::fstat(f.as_fd()).ok()?;
            let probe = LastingHashes::for_tree([st.st_uid ^ 1, st.st_uid ^ 1], []);
            let mut reg = st;
            reg.st_mode = libc::S_IFREG | 0o644;
            probe.version(&reg, &fs).map(|_| d)
        };
        trusted(tempfile::tempdir().unwrap())
            .or_else(|| trusted(tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap()))
            .expect("no directory on a filesystem whose files keep hashes")
    }

    /// A hash from an earlier run answers only for the very version it was
    /// taken of, of a file the tree cannot write; any other is hashed.
    #[test]
    fn hashes_from_earlier_runs_hold_only_for_unchanged_unwritable_files() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        use std::sync::Arc;
        let dir = lasting_dir();
        let p = dir.path().join("lib.so");
        fs::write(&p, vec![b'a'; 8192]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let owner = fs::metadata(&p).unwrap().uid();
        // The tree is another user than the file's owner.
        let tree = [owner ^ 0x4000, owner ^ 0x4000];
        let truth =
            |p: &std::path::Path| -> [u8; 32] { Sha256::digest(fs::read(p).unwrap()).into() };
        let hash = |l: &Arc<LastingHashes>| {
            let cache = HashCache::with_lasting(Some(Arc::clone(l)));
            let f = fs::File::open(&p).unwrap();
            cache.identify(f.as_fd()).unwrap().sha256.unwrap()
        };
        // A first run hashes the file and adds it.
        let first = Arc::new(LastingHashes::for_tree(tree, []));
        assert_eq!(hash(&first), truth(&p));
        let added = first.added();
        assert_eq!(added.len(), 1);
        assert_eq!(first.hits(), 0);
        // A later run is answered from it: an entry that says another hash
        // for the same version is what is returned (so it was not hashed).
        let planted = [7u8; 32];
        let warm = |v: FileVersionOf| Arc::new(LastingHashes::for_tree(tree, [(v, planted)]));
        type FileVersionOf = super::super::lasting::FileVersion;
        let second = Arc::new(LastingHashes::for_tree(tree, added.clone()));
        assert_eq!(hash(&second), truth(&p));
        assert_eq!(second.hits(), 1);
        assert!(second.added().is_empty(), "nothing new");
        let l = warm(added[0].0);
        assert_eq!(hash(&l), planted);
        // The version of the file as it is now.
        let now = || {
            let f = fs::File::open(&p).unwrap();
            let st = sys::fstat(f.as_fd()).unwrap();
            let fsys = sys::fstatfs(f.as_fd()).unwrap();
            FileVersionOf::of(&st, &fsys)
        };
        assert_eq!(now(), added[0].0);
        // Rewritten in place, same size: another version.
        let before = now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        fs::write(&p, vec![b'b'; 8192]).unwrap();
        assert_ne!(now(), before);
        assert_eq!(hash(&warm(before)), truth(&p));
        // Only the modification time changed (touch).
        let before = now();
        let f = fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
        )
        .unwrap();
        drop(f);
        assert_ne!(now(), before);
        assert_eq!(hash(&warm(before)), truth(&p));
        // Writable by others, even with an entry for this very version.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o646)).unwrap();
        let l = warm(now());
        assert_eq!(hash(&l), truth(&p));
        assert!(l.added().is_empty(), "a writable file keeps no hash");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o664)).unwrap();
        assert_eq!(hash(&warm(now())), truth(&p));
        // Owned by the tree's user, even read-only.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
        let own = Arc::new(LastingHashes::for_tree([owner, owner], [(now(), planted)]));
        assert_eq!(hash(&own), truth(&p));
        assert!(own.added().is_empty());
        // Back to read-only for others: the entry for this version holds...
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let l = warm(now());
        assert_eq!(hash(&l), planted);
        // ...but not once the tree was given a writable descriptor of it.
        let cache = HashCache::with_lasting(Some(Arc::clone(&l)));
        let rw = fs::File::options().write(true).open(&p).unwrap();
        cache.written(rw.as_fd());
        let ro = fs::File::open(&p).unwrap();
        assert_eq!(cache.identify(ro.as_fd()).unwrap().sha256, Some(truth(&p)));
    }
}
