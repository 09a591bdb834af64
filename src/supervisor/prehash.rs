//! Hashing the command's first files while the supervisor starts.
//!
//! Every program and library a run maps executable is recorded with its
//! SHA-256, taken while the caller waits. The first exec of a run maps the
//! command's program, its interpreter and the libraries they name, which
//! nothing has hashed yet (for `bash`: about 3.5 MB, 2 ms). Those files are
//! known before the command starts, from the program's ELF headers, so a
//! thread hashes them while the policy is loaded, and the run's hash cache
//! starts with what it found.
//!
//! This is a guess made only to save time: a file guessed wrong is hashed
//! for nothing, and a file not guessed is hashed when it is mapped. What the
//! guesses give is used exactly as the run's own cache is
//! ([`HashCache::seed`]): for the same file at the same version (size,
//! mtime, ctime, checked before and after it was read), and never for a file
//! the tree could write. The hashing is done before the command exists, so
//! nothing of the tree can have touched the files yet.
//!
//! The thread must be finished ([`Prehash::finish`]) before the supervisor
//! forks: it stops after the file it is reading (whose hash the first exec
//! needs anyway: the program first, then what it maps), never in the
//! middle of one, so no hashing is thrown away.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::os::fd::AsFd;

use super::elf::Elf;
use super::lasting::LastingHashes;
use super::procfs::{self, Prehashed, Version};
use super::sys;

/// Files hashed at most.
const MAX_FILES: usize = 64;
/// Bytes hashed at most.
const MAX_BYTES: u64 = 1 << 30;

/// Where the loader looks for a library named without a `/` when nothing
/// else says (the system's default directories, multiarch first).
fn library_dirs() -> Vec<PathBuf> {
    let multiarch = match std::env::consts::ARCH {
        "x86_64" => Some("x86_64-linux-gnu"),
        "aarch64" => Some("aarch64-linux-gnu"),
        _ => None,
    };
    let mut dirs = Vec::new();
    for base in ["/lib", "/usr/lib"] {
        if let Some(m) = multiarch {
            dirs.push(Path::new(base).join(m));
        }
    }
    dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(PathBuf::from));
    dirs
}

/// The thread hashing the files a program is about to map.
pub struct Prehash {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Prehashed>,
}

impl Prehash {
    /// Starts hashing `program`, its interpreter and the libraries they
    /// name, except those whose hashes are kept from earlier runs in
    /// `lasting` (to which those it may keep are added). `None` when no
    /// thread could be started (then nothing is hashed ahead).
    pub fn start(program: &Path, lasting: Option<Arc<LastingHashes>>) -> Option<Prehash> {
        let stop = Arc::new(AtomicBool::new(false));
        let (program, flag) = (program.to_path_buf(), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("lexecon-prehash".into())
            .spawn(move || hash_tree(&program, lasting.as_deref(), &flag))
            .ok()?;
        Some(Prehash { stop, thread })
    }

    /// Stops the thread after the file it is hashing, waits for it, and
    /// gives what it hashed.
    pub fn finish(self) -> Prehashed {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Hashes `program` and the files it names, breadth first, until `stop`.
fn hash_tree(program: &Path, lasting: Option<&LastingHashes>, stop: &AtomicBool) -> Prehashed {
    let dirs = library_dirs();
    let mut out = Prehashed::default();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([program.to_path_buf()]);
    let (mut files, mut bytes) = (0usize, 0u64);
    while let Some(path) = queue.pop_front() {
        if stop.load(Ordering::Relaxed) || files >= MAX_FILES || bytes >= MAX_BYTES {
            break;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let Ok(st) = sys::fstat(file.as_fd()) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || !seen.insert((st.st_dev, st.st_ino)) {
            continue;
        }
        if let Some(elf) = Elf::read(&file) {
            queue.extend(elf.interpreter());
            for name in elf.needed() {
                if let Some(p) = find_library(&name, &dirs) {
                    queue.push_back(p);
                }
            }
        }
        // Kept from an earlier run: the run's cache answers it from there.
        let keep = lasting.and_then(|l| {
            let fs = sys::fstatfs(file.as_fd()).ok()?;
            Some((l, l.version(&st, &fs)?, Version::of(&st)))
        });
        if keep.is_some_and(|(l, v, _)| l.knows(&v)) {
            continue;
        }
        files += 1;
        bytes += st.st_size.max(0) as u64;
        // A file begun is finished: stopping halfway would only make the
        // first exec hash it again.
        if let Some(entry) = procfs::hash_versioned(file) {
            // Kept for later runs when it is still the version judged
            // fit to keep.
            if let Some((l, v, version)) = keep {
                if version == entry.1 {
                    l.add(v, entry.2);
                }
            }
            out.push(entry);
        }
    }
    out
}

/// The file the loader would load for `name`, as far as the default
/// directories tell.
fn find_library(name: &OsStr, dirs: &[PathBuf]) -> Option<PathBuf> {
    if name.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(name));
    }
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn id(p: &Path) -> (u64, u64) {
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    #[test]
    fn a_program_its_loader_and_its_libc_are_hashed() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let got = Prehash::start(&exe, None).unwrap();
        // Let it run to the end: `finish` stops it early otherwise.
        while !got.thread.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let got = got.finish();
        let file = File::open(&exe).unwrap();
        let elf = Elf::read(&file).unwrap();
        let interp = elf.interpreter().unwrap();
        for p in [exe.clone(), interp] {
            use sha2::Digest;
            let want: [u8; 32] = sha2::Sha256::digest(std::fs::read(&p).unwrap()).into();
            let entry = got
                .entry(id(&p))
                .unwrap_or_else(|| panic!("{p:?} not hashed"));
            assert_eq!(entry, want, "{p:?}");
        }
        let libc = find_library(OsStr::new("libc.so.6"), &library_dirs()).unwrap();
        assert!(got.entry(id(&libc)).is_some());
    }

    #[test]
    fn a_stopped_thread_gives_only_whole_hashes() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let stop = AtomicBool::new(true);
        assert!(hash_tree(&exe, None, &stop).is_empty());
    }
}
