//! Content hashes that outlast a run: the supervisor's side of the hash
//! cache kept across runs (the file that holds it, and the key that
//! authenticates it, are the caller's).
//!
//! Within a run, a cached hash is never used for a file the tree was given
//! a writable descriptor of ([`super::procfs::HashCache`]): a write through
//! a shared mapping changes the bytes and no metadata. Across runs the
//! supervisor cannot know who held such a mapping, so a hash from an
//! earlier run is used only for a file the tree's user cannot write and
//! could not have written while it kept its present version
//! ([`LastingHashes::version`]):
//!
//! - the tree runs neither as root nor with capabilities (checked here,
//!   from the supervisor's own credentials, which the tree inherits; a
//!   privileged tree gets no [`LastingHashes`] at all);
//! - a regular file with at least one name, no larger than the hashing
//!   limit;
//! - owned by a uid that is not one of the tree's (its real and effective
//!   uid); a file the tree's user owns it can make writable (chmod);
//! - no write bit for group or others: with an access ACL the group bits
//!   are its mask, so no named user or group entry grants writing either,
//!   and the owner is not the tree;
//! - on a filesystem whose metadata the kernel keeps and that needs root to
//!   mount (ext2/3/4, XFS, Btrfs, F2FS, SquashFS, EROFS, ZFS, bcachefs), and
//!   not on a loop or network block device (the image behind one may be a
//!   file the user can write, which changes the bytes under the mounted
//!   filesystem and no metadata). FUSE, NFS and other network filesystems
//!   report what their server says; tmpfs and overlayfs can be mounted by
//!   the tree in a user namespace of its own: none of them is trusted.
//!   Only the loop and nbd majors are recognised: a Btrfs, ZFS or bcachefs
//!   file carries an anonymous device number, and a device-mapper device
//!   may stand on a loop device, so a filesystem that root mounted from an
//!   image the user can write is not seen for what it is.
//!
//! A file found so is keyed by its device, inode, size, modification and
//! change times (nanoseconds; the change time cannot be set from user
//! space) and the filesystem's `f_fsid`; any change of content through
//! `write(2)`, of mode or of owner gives another key. What this cannot see:
//! a process of the tree's user that mapped the file writable while it was
//! writable to that user (before root or its owner changed its mode or
//! owner) can still change its bytes; such a file is root's to fix.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::sys::Filesystem;

/// One version of one file: what a hash from an earlier run is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileVersion {
    pub dev: u64,
    pub ino: u64,
    pub size: i64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    /// The filesystem's `f_fsid`.
    pub fsid: u64,
}

impl FileVersion {
    /// Length of [`FileVersion::to_bytes`].
    pub const LEN: usize = 64;

    /// The version of the file `st` describes, on the filesystem `fs`
    /// (whether it may keep a hash is [`LastingHashes::version`]'s).
    pub fn of(st: &libc::stat, fs: &Filesystem) -> FileVersion {
        FileVersion {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            fsid: fs.fsid,
        }
    }

    /// Eight big-endian 64-bit words.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let words = [
            self.dev,
            self.ino,
            self.size as u64,
            self.mtime.0 as u64,
            self.mtime.1 as u64,
            self.ctime.0 as u64,
            self.ctime.1 as u64,
            self.fsid,
        ];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8; Self::LEN]) -> FileVersion {
        let mut w = [0u64; 8];
        for (slot, chunk) in w.iter_mut().zip(b.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            *slot = u64::from_be_bytes(a);
        }
        FileVersion {
            dev: w[0],
            ino: w[1],
            size: w[2] as i64,
            mtime: (w[3] as i64, w[4] as i64),
            ctime: (w[5] as i64, w[6] as i64),
            fsid: w[7],
        }
    }
}

/// Filesystems (`statfs` `f_type`) whose files may keep a hash across runs.
const TRUSTED_FILESYSTEMS: [i64; 8] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0xF2F5_2010, // F2FS
    0x7371_7368, // SquashFS
    0xE0F5_E1E2, // EROFS
    0x2FC1_2FC1, // ZFS
    0xCA45_1A4E, // bcachefs
];

/// Block device majors whose contents another file may stand for.
const UNTRUSTED_MAJORS: [u32; 2] = [
    7,  // loop
    43, // nbd
];

/// Hashes from earlier runs (read only), and the ones this run adds.
pub struct LastingHashes {
    /// The tree's uids (the supervisor's real and effective uid).
    tree_uids: [u32; 2],
    known: HashMap<FileVersion, [u8; 32]>,
    added: Mutex<Vec<(FileVersion, [u8; 32])>>,
    hits: AtomicU64,
}

impl std::fmt::Debug for LastingHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastingHashes")
            .field("known", &self.known.len())
            .field("hits", &self.hits())
            .finish()
    }
}

impl LastingHashes {
    /// The hashes `known` from earlier runs, for a tree that runs with the
    /// supervisor's credentials; `None` (nothing used, nothing kept) when
    /// those are root's or hold capabilities, or cannot be read.
    pub fn new(known: impl IntoIterator<Item = (FileVersion, [u8; 32])>) -> Option<LastingHashes> {
        if !matches!(super::privilege::of_command(), Ok(None)) {
            return None;
        }
        let tree_uids = [crate::os::uid(), crate::os::euid()];
        if tree_uids.contains(&0) {
            return None;
        }
        Some(LastingHashes {
            tree_uids,
            known: known.into_iter().collect(),
            added: Mutex::new(Vec::new()),
            hits: AtomicU64::new(0),
        })
    }

    /// The hashes from earlier runs.
    pub fn known(&self) -> impl Iterator<Item = (&FileVersion, &[u8; 32])> {
        self.known.iter()
    }

    /// The hashes this run took of files that may keep them, oldest first.
    pub fn added(&self) -> Vec<(FileVersion, [u8; 32])> {
        self.lock().clone()
    }

    /// How many hashes were answered from earlier runs.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The key of the file `st` describes, on the filesystem `fs`, when a
    /// hash of it may outlast the run (see the module's documentation);
    /// `None` when it may not.
    pub fn version(&self, st: &libc::stat, fs: &Filesystem) -> Option<FileVersion> {
        if st.st_mode & libc::S_IFMT != libc::S_IFREG
            || st.st_nlink == 0
            || st.st_size < 0
            || st.st_size > super::procfs::HASH_MAX_BYTES
        {
            return None;
        }
        if self.tree_uids.contains(&st.st_uid) || st.st_mode & 0o022 != 0 {
            return None;
        }
        if !TRUSTED_FILESYSTEMS.contains(&fs.kind)
            || UNTRUSTED_MAJORS.contains(&libc::major(st.st_dev))
        {
            return None;
        }
        Some(FileVersion::of(st, fs))
    }

    /// The hash an earlier run took of `v`.
    pub(super) fn get(&self, v: &FileVersion) -> Option<[u8; 32]> {
        let h = self.known.get(v).copied();
        if h.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        h
    }

    /// Whether an earlier run hashed `v` (not counted as a hit).
    pub(super) fn knows(&self, v: &FileVersion) -> bool {
        self.known.contains_key(v)
    }

    /// This run hashed `v`.
    pub(super) fn add(&self, v: FileVersion, hash: [u8; 32]) {
        if self.known.get(&v) == Some(&hash) {
            return;
        }
        let mut added = self.lock();
        // Bounded: a run that hashes more than this keeps the first ones.
        if added.len() < ADDED_MAX && !added.iter().any(|(k, _)| *k == v) {
            added.push((v, hash));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(FileVersion, [u8; 32])>> {
        // Pushes are single operations: a panicking holder leaves a
        // consistent list.
        self.added.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Most hashes one run adds.
pub const ADDED_MAX: usize = 4096;

#[cfg(test)]
impl LastingHashes {
    /// As [`LastingHashes::new`] for a tree running as `tree_uids`, whatever
    /// the test's own credentials.
    pub(crate) fn for_tree(
        tree_uids: [u32; 2],
        known: impl IntoIterator<Item = (FileVersion, [u8; 32])>,
    ) -> LastingHashes {
        LastingHashes {
            tree_uids,
            known: known.into_iter().collect(),
            added: Mutex::new(Vec::new()),
            hits: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(uid: u32, mode: u32) -> libc::stat {
        let mut st = blank_stat();
        st.st_mode = libc::S_IFREG | mode;
        st.st_uid = uid;
        st.st_nlink = 1;
        st.st_size = 100;
        st.st_dev = libc::makedev(8, 1);
        st.st_ino = 42;
        st
    }

    /// A `stat` to fill in: that of `/` with the fields the tests set
    /// cleared (the struct has private padding fields, so it is taken from
    /// a real one rather than built).
    fn blank_stat() -> libc::stat {
        let dir = std::ffi::CString::new("/").unwrap();
        let mut st = super::super::sys::statat(super::super::sys::at_fdcwd(), &dir).unwrap();
        st.st_mode = 0;
        st.st_uid = 0;
        st.st_gid = 0;
        st.st_nlink = 0;
        st.st_size = 0;
        st.st_mtime = 0;
        st.st_mtime_nsec = 0;
        st.st_ctime = 0;
        st.st_ctime_nsec = 0;
        st
    }

    const EXT4: Filesystem = Filesystem {
        kind: 0xEF53,
        fsid: 7,
    };

    #[test]
    fn only_files_the_tree_cannot_write_keep_a_hash() {
        let l = LastingHashes::for_tree([1000, 1000], []);
        // Root's, 0755, on ext4: kept.
        assert!(l.version(&regular(0, 0o755), &EXT4).is_some());
        // Another user's, read-only to others: kept.
        assert!(l.version(&regular(1001, 0o644), &EXT4).is_some());
        // Writable by group or others (an ACL's mask is the group bits).
        assert!(l.version(&regular(0, 0o775), &EXT4).is_none());
        assert!(l.version(&regular(0, 0o757), &EXT4).is_none());
        assert!(l.version(&regular(0, 0o620), &EXT4).is_none());
        // The tree's own file, even read-only (it can chmod it).
        assert!(l.version(&regular(1000, 0o444), &EXT4).is_none());
        let other_effective = LastingHashes::for_tree([1000, 1002], []);
        assert!(other_effective
            .version(&regular(1002, 0o444), &EXT4)
            .is_none());
        // Not a regular file; unlinked; too large.
        let mut dir = regular(0, 0o755);
        dir.st_mode = libc::S_IFDIR | 0o755;
        assert!(l.version(&dir, &EXT4).is_none());
        let mut gone = regular(0, 0o755);
        gone.st_nlink = 0;
        assert!(l.version(&gone, &EXT4).is_none());
        let mut big = regular(0, 0o755);
        big.st_size = super::super::procfs::HASH_MAX_BYTES + 1;
        assert!(l.version(&big, &EXT4).is_none());
        // Filesystems whose metadata a user can make up, or can mount.
        for kind in [
            0x6573_5546, // FUSE
            0x6969,      // NFS
            0x0102_1994, // tmpfs
            0x794C_7630, // overlayfs
            0xFF53_4D42, // CIFS
        ] {
            let fs = Filesystem { kind, fsid: 7 };
            assert!(l.version(&regular(0, 0o755), &fs).is_none(), "{kind:#x}");
        }
        // A loop device: its image may be the user's file.
        let mut looped = regular(0, 0o755);
        looped.st_dev = libc::makedev(7, 3);
        assert!(l.version(&looped, &EXT4).is_none());
    }

    #[test]
    fn the_key_is_the_whole_version() {
        let l = LastingHashes::for_tree([1000, 1000], []);
        let st = regular(0, 0o755);
        let v = l.version(&st, &EXT4).unwrap();
        assert_eq!(FileVersion::from_bytes(&v.to_bytes()), v);
        let changed = |f: &dyn Fn(&mut libc::stat)| {
            let mut s = st;
            f(&mut s);
            l.version(&s, &EXT4).unwrap()
        };
        assert_ne!(changed(&|s| s.st_size += 1), v);
        assert_ne!(changed(&|s| s.st_mtime_nsec += 1), v);
        assert_ne!(changed(&|s| s.st_ctime_nsec += 1), v);
        assert_ne!(changed(&|s| s.st_ino += 1), v);
        assert_ne!(changed(&|s| s.st_dev += 1), v);
        let other_fs = Filesystem {
            kind: 0xEF53,
            fsid: 8,
        };
        assert_ne!(l.version(&st, &other_fs).unwrap(), v);
    }

    /// A tree running as root, or with capabilities, gets nothing kept.
    #[test]
    fn a_privileged_tree_keeps_nothing() {
        let privileged = super::super::privilege::of_command().unwrap().is_some();
        assert_eq!(LastingHashes::new([]).is_none(), privileged);
    }
}
