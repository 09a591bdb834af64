//! The dynamic loader run as a program: `ld.so [OPTIONS] PROG ARGS…` runs
//! PROG without an `execve` of PROG (ld.so(8)).
//!
//! The loader is recognised by what it is, not by its name: the system's
//! loaders (the interpreter named by the supervisor's own `PT_INTERP`, and
//! the usual paths) are known by device and inode and by content hash when
//! the run starts, so a copy under another name or in a memfd is the loader
//! too; a file named like a loader (`ld-linux*`, `ld.so*`) is taken as one
//! as well. PROG is resolved as the caller would resolve it (its cwd, its
//! `/proc/self`), through the same walk as opens, and its hash is taken
//! without blocking and within a bound (only regular files are read).
//!
//! A modified loader, or any hand-written program that maps a file
//! executable and jumps into it, is not recognised here: that is the
//! general case of code loaded without an exec.

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::procfs::{HashCache, Identity};

/// Where the system's loaders usually are (x86-64: glibc, musl).
const USUAL_PATHS: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/usr/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-musl-x86_64.so.1",
];

/// Options of the loader that take a value (ld.so(8)).
const OPTS_WITH_VALUE: &[&[u8]] = &[
    b"--library-path",
    b"--inhibit-rpath",
    b"--audit",
    b"--preload",
    b"--argv0",
    b"--glibc-hwcaps-prefix",
    b"--glibc-hwcaps-mask",
];

/// The system's dynamic loaders, by file and by content.
#[derive(Debug, Default)]
pub struct Loaders {
    files: HashSet<(u64, u64)>,
    hashes: HashSet<[u8; 32]>,
}

impl Loaders {
    /// Finds the loaders of this system.
    pub fn detect(hashes: &HashCache) -> Loaders {
        let mut paths: Vec<PathBuf> = USUAL_PATHS.iter().map(PathBuf::from).collect();
        if let Some(p) = interpreter_of(Path::new("/proc/self/exe")) {
            paths.push(p);
        }
        let mut l = Loaders::default();
        for p in paths {
            let Ok(f) = fs::File::open(&p) else { continue };
            use std::os::fd::AsFd;
            if let Ok(id) = hashes.identify(f.as_fd()) {
                l.files.insert((id.dev, id.ino));
                if let Some(h) = id.sha256 {
                    l.hashes.insert(h);
                }
            }
        }
        l
    }

    /// Whether the program at `path` with `identity` is a dynamic loader.
    pub fn is_loader(&self, path: &Path, identity: Option<&Identity>) -> bool {
        if let Some(id) = identity {
            if self.files.contains(&(id.dev, id.ino))
                || id.sha256.is_some_and(|h| self.hashes.contains(&h))
            {
                return true;
            }
        }
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        name.starts_with(b"ld-linux")
            || name.starts_with(b"ld.so")
            || (name.starts_with(b"ld-") && name.windows(3).any(|w| w == b".so"))
    }
}

/// The index in `argv` of the program the loader is asked to run, if any
/// (`--list`, `--verify`, `--help` and the like run nothing).
pub fn program_arg<A: AsRef<[u8]>>(argv: &[A]) -> Option<usize> {
    let mut i = 1;
    while let Some(a) = argv.get(i) {
        let s = a.as_ref();
        if s == b"--" {
            return (i + 1 < argv.len()).then_some(i + 1);
        }
        if OPTS_WITH_VALUE.contains(&s) {
            i += 2;
            continue;
        }
        if s.starts_with(b"--") {
            if matches!(s, b"--help" | b"--version" | b"--list" | b"--verify") {
                return None;
            }
            i += 1;
            continue;
        }
        return Some(i);
    }
    None
}

/// The `PT_INTERP` of the ELF file at `path`, if it has one.
fn interpreter_of(path: &Path) -> Option<PathBuf> {
    let file = fs::File::open(path).ok()?;
    super::elf::Elf::read(&file)?.interpreter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_argument_is_found_after_the_options() {
        let argv = |w: &[&str]| w.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(program_arg(&argv(&["ld.so", "/p", "-x"])), Some(1));
        assert_eq!(
            program_arg(&argv(&[
                "ld.so",
                "--library-path",
                "/l",
                "--inhibit-cache",
                "rel/prog"
            ])),
            Some(4)
        );
        assert_eq!(program_arg(&argv(&["ld.so", "--", "--weird"])), Some(2));
        assert_eq!(program_arg(&argv(&["ld.so", "--help"])), None);
        assert_eq!(program_arg(&argv(&["ld.so", "--list", "/p"])), None);
        assert_eq!(program_arg(&argv(&["ld.so"])), None);
        assert_eq!(program_arg(&argv(&["ld.so", "--"])), None);
    }

    #[test]
    fn the_system_loader_is_known_by_file_and_content() {
        let cache = HashCache::default();
        let l = Loaders::detect(&cache);
        let interp = interpreter_of(Path::new("/proc/self/exe"))
            .expect("the test binary is dynamically linked");
        let f = fs::File::open(&interp).unwrap();
        use std::os::fd::AsFd;
        let id = cache.identify(f.as_fd()).unwrap();
        assert!(l.is_loader(Path::new("/x/innocent"), Some(&id)));
        // A copy is another file with the same content.
        let copy = Identity {
            dev: 0,
            ino: 1,
            sha256: id.sha256,
        };
        assert!(l.is_loader(Path::new("/memfd:x (deleted)"), Some(&copy)));
        let other = Identity {
            dev: 0,
            ino: 1,
            sha256: Some([0; 32]),
        };
        assert!(!l.is_loader(Path::new("/usr/bin/true"), Some(&other)));
        assert!(l.is_loader(Path::new("/opt/ld-linux-x86-64.so.2"), None));
    }
}
