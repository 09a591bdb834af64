//! Code loaded without an exec: a file mapped executable (`mmap` with
//! `PROT_EXEC`) or a file mapping made executable (`mprotect`,
//! `pkey_mprotect` adding `PROT_EXEC`). Each is judged as loading the
//! mapped program: its path and identity (device, inode, content hash), as
//! an exec of it, so a hand-written or modified loader cannot run a
//! program the exec rules forbid.
//!
//! The filter notifies only executable mappings of files; anonymous
//! memory made executable by `mprotect` is looked up (one `PROCMAP_QUERY`
//! per mapping, or `/proc/TID/maps` on older kernels) and passes. The call
//! is continued after judging: the kernel maps what the descriptor or the
//! address names when it runs, so a thread that swaps the descriptor
//! (`dup2`) or remaps the address in between can get another file mapped.
//! Code copied into anonymous memory, and JIT compilers, are out of reach
//! of any file-based check.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::action::{Action, ExecAction};

use super::decode::CodeMapRequest;
use super::notify::{cwd_for, cwd_of, Answer, Shared};
use super::procfs::Identity;
use super::resolve::{self, Lookup, Target};
use super::sys;
use super::{Caller, Ruling};

/// One mapping of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// 0 for anonymous memory.
    pub inode: u64,
    pub dev: u64,
    /// The file's path as the kernel names it (may end in ` (deleted)`).
    pub name: Vec<u8>,
}

/// `struct procmap_query` (Linux 6.11).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: libc::c_ulong = 0xc068_6611;
/// The mapping covering the address, or the next one above it.
const COVERING_OR_NEXT_VMA: u64 = 0x10;

/// The mappings of `tid` that overlap `[addr, addr + len)`.
pub fn vmas(tid: i32, addr: u64, len: u64) -> io::Result<Vec<Vma>> {
    let end = addr.saturating_add(len.max(1));
    let maps = std::fs::File::open(format!("/proc/{tid}/maps"))?;
    let mut out = Vec::new();
    let mut at = addr;
    let mut name = vec![0u8; 4096];
    while at < end {
        let mut q = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_flags: COVERING_OR_NEXT_VMA,
            query_addr: at,
            vma_name_size: name.len() as u32,
            vma_name_addr: name.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: PROCMAP_QUERY reads and fills `q` (its size is given in
        // `q.size`) and writes at most `vma_name_size` bytes into `name`.
        let r = unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY as _, &mut q) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // No mapping at or above the address.
                Some(libc::ENOENT) => Ok(out),
                // Older kernels: read the text.
                Some(libc::ENOTTY) | Some(libc::EINVAL) => {
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        log::info!(
                            "PROCMAP_QUERY: refused ({e}); mappings are read from /proc/PID/maps"
                        )
                    });
                    vmas_from_text(tid, addr, end)
                }
                _ => Err(e),
            };
        }
        if q.vma_start >= end {
            break;
        }
        let n = (q.vma_name_size as usize).saturating_sub(1).min(name.len());
        out.push(Vma {
            start: q.vma_start,
            end: q.vma_end,
            inode: q.inode,
            dev: libc::makedev(q.dev_major, q.dev_minor),
            name: if q.inode == 0 {
                Vec::new()
            } else {
                name[..n].to_vec()
            },
        });
        at = q.vma_end;
    }
    Ok(out)
}

/// As [`vmas`], from the text of `/proc/TID/maps`.
fn vmas_from_text(tid: i32, addr: u64, end: u64) -> io::Result<Vec<Vma>> {
    let text = std::fs::read(format!("/proc/{tid}/maps"))?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(parse_maps_line)
        .filter(|v| v.start < end && v.end > addr)
        .collect())
}

/// One line of `/proc/PID/maps`:
/// `start-end perms offset major:minor inode [path]`.
fn parse_maps_line(line: &[u8]) -> Option<Vma> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = std::str::from_utf8(fields.next()?).ok()?;
    let (s, e) = range.split_once('-')?;
    fields.next()?;
    fields.next()?;
    let dev = std::str::from_utf8(fields.next()?).ok()?;
    let (maj, min) = dev.split_once(':')?;
    let inode: u64 = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let name = fields
        .next()
        .map(|n| n.iter().skip_while(|&&b| b == b' ').copied().collect())
        .unwrap_or_default();
    Some(Vma {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        inode,
        dev: libc::makedev(
            u32::from_str_radix(maj, 16).ok()?,
            u32::from_str_radix(min, 16).ok()?,
        ),
        name: if inode == 0 { Vec::new() } else { name },
    })
}

fn exec_of(path: PathBuf, cwd: PathBuf, identity: Option<&Identity>) -> Action {
    Action::Exec(ExecAction {
        argv: vec![path.clone().into_os_string()],
        path,
        cwd,
        sha256: identity.and_then(|i| i.sha256),
    })
}

pub(super) fn handle(shared: &Arc<Shared>, caller: &Caller, r: &CodeMapRequest) -> Answer {
    let judged = match r.fd {
        Some(fd) => map_of_fd(shared, caller, r.syscall, fd),
        None => protect(shared, caller, r),
    };
    match judged {
        Ruling::Allow => Answer::Continue,
        Ruling::Deny(e) => Answer::Deny(e),
        Ruling::Hold => Answer::Hold,
    }
}

/// `mmap(…, PROT_EXEC, …, fd, …)`: the file open as `fd`.
fn map_of_fd(shared: &Arc<Shared>, caller: &Caller, syscall: &'static str, fd: i32) -> Ruling {
    let rc = resolve::Caller {
        tid: caller.tid,
        tgid: caller.pid,
    };
    let lookup = Lookup {
        follow_last: true,
        empty_path: true,
    };
    let resolved = match resolve::resolve(&shared.proc_info, rc, fd, b"", lookup) {
        Ok(r) => r,
        // A bad descriptor: what the kernel would answer.
        Err(e) => return Ruling::Deny(e),
    };
    let Target::Object { fd: obj, stat } = &resolved.target else {
        return Ruling::Deny(libc::EBADF);
    };
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        // Device mappings: not a program.
        return Ruling::Allow;
    }
    // `stat` is the walk's fstat of `obj` itself.
    let identity = shared.hashes.identify_stat(obj.as_fd(), stat).ok();
    let action = exec_of(
        resolved.path.clone(),
        cwd_for(&resolved, caller.tid),
        identity.as_ref(),
    );
    shared
        .judge
        .judge(caller, syscall, &action, identity.as_ref(), None)
}

/// `mprotect(addr, len, PROT_EXEC…)`: every file mapped in the range.
fn protect(shared: &Arc<Shared>, caller: &Caller, r: &CodeMapRequest) -> Ruling {
    let vmas = match vmas(caller.tid, r.addr, r.len) {
        Ok(v) => v,
        Err(e) => {
            // What is mapped there cannot be told: refuse.
            shared.judge.refused(
                caller,
                r.syscall,
                &format!("cannot read the caller's mappings: {e}"),
                libc::EACCES,
            );
            return Ruling::Deny(libc::EACCES);
        }
    };
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for v in vmas.iter().filter(|v| v.inode != 0) {
        if seen.contains(&(v.dev, v.inode)) {
            continue;
        }
        seen.push((v.dev, v.inode));
        let name = v.name.strip_suffix(b" (deleted)").unwrap_or(&v.name);
        let path = PathBuf::from(OsString::from_vec(name.to_vec()));
        // The file behind the mapping, when its name still leads to it.
        let identity = std::ffi::CString::new(name.to_vec())
            .ok()
            .and_then(|c| sys::openat(super::notify::at_fdcwd(), &c, libc::O_PATH, 0).ok())
            .filter(|fd| {
                sys::fstat(fd.as_fd()).is_ok_and(|st| st.st_ino == v.inode && st.st_dev == v.dev)
            })
            .and_then(|fd| shared.hashes.identify(fd.as_fd()).ok())
            .or(Some(Identity {
                dev: v.dev,
                ino: v.inode,
                sha256: None,
            }));
        let action = exec_of(path, cwd_of(caller.tid), identity.as_ref());
        match shared
            .judge
            .judge(caller, r.syscall, &action, identity.as_ref(), None)
        {
            Ruling::Allow => {}
            other => return other,
        }
    }
    Ruling::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_parsed() {
        let v = parse_maps_line(
            b"7f0c3a600000-7f0c3a628000 r-xp 00028000 fe:01 1835015                    /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(
            (v.start, v.end, v.inode),
            (0x7f0c_3a60_0000, 0x7f0c_3a62_8000, 1_835_015)
        );
        assert_eq!(v.dev, libc::makedev(0xfe, 1));
        assert_eq!(v.name, b"/usr/lib/x86_64-linux-gnu/libc.so.6");
        let anon = parse_maps_line(b"7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]").unwrap();
        assert_eq!((anon.inode, anon.name.len()), (0, 0));
    }

    #[test]
    fn the_mappings_of_this_process_are_found_by_address() {
        let tid = sys::gettid();
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let st = sys::fstat(f.as_fd()).unwrap();
        // A function of this binary lies in a mapping of this binary.
        let addr = the_mappings_of_this_process_are_found_by_address as *const () as u64;
        let v = vmas(tid, addr, 1).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].inode, v[0].dev), (st.st_ino, st.st_dev));
        assert!(v[0].start <= addr && addr < v[0].end);
        let text = vmas_from_text(tid, addr, addr + 1).unwrap();
        assert_eq!(text, v);
    }
}
