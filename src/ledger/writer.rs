//! Appending runs to a ledger file, and sealing a torn or unsealed ledger
//! (`lexecon ledger recover`).
//!
//! The writer owns an `O_APPEND | O_CLOEXEC` descriptor and an exclusive
//! `flock` on it for its whole life, so two writers never interleave. Each
//! record is one `write(2)` of one canonical line; its hash extends the
//! chain and the run's Merkle tree at once. Checkpoints are signed every
//! `checkpoint_every` records, when `checkpoint_interval` has passed since
//! the oldest unsigned record, right after a block, and at the end of the
//! run; each one is signed by the current epoch key, which is then replaced
//! by a fresh key whose public half was written (and so signed) just before.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use super::error::LedgerError;
use super::jcs;
use super::keys::{create_private_dir, HostKey};
use super::merkle::{leaf_hash, CompactRange, Hash};
use super::note::{self, Checkpoint};
use super::record::{self, Body, Counts, DecisionEntry, Outcome, RunEnd, RunHeader, RunInfo};
use crate::action::Verdict;

/// When the ledger file is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// `fdatasync` after every checkpoint (and at the end of a run).
    #[default]
    Checkpoint,
    /// `fdatasync` after every record.
    EveryRecord,
    /// Never (tests and benchmarks only: a crash may lose records).
    Never,
}

/// What to do when another writer holds the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// Block until the other writer is done.
    #[default]
    Wait,
    /// Fail at once with [`LedgerError::Locked`].
    Fail,
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Sign a checkpoint after this many records (N; 1 signs every record).
    pub checkpoint_every: u64,
    /// Sign a checkpoint once the oldest unsigned record is this old (T).
    pub checkpoint_interval: Duration,
    pub sync: SyncPolicy,
    pub lock: LockMode,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            checkpoint_every: 1024,
            checkpoint_interval: Duration::from_millis(1000),
            sync: SyncPolicy::Checkpoint,
            lock: LockMode::Wait,
        }
    }
}

/// Key name of epoch `e`'s signing key in checkpoint notes.
pub fn epoch_key_name(e: u64) -> String {
    format!("lexecon-epoch-{e}")
}

/// The checkpoint origin of the run or recovery with id `id`.
pub fn origin(id: &str) -> String {
    format!("lexecon/{id}")
}

struct RunState {
    id: String,
    origin: String,
    tree: CompactRange,
    epoch: u64,
    epoch_key: SigningKey,
    /// Records written since the last checkpoint (checkpoints and epoch
    /// records excluded).
    pending: u64,
    oldest_pending: Option<Instant>,
    counts: Counts,
    /// The run's mode, which format-2 decisions leave out when theirs is
    /// the same.
    mode: crate::action::Mode,
    /// The record format of the run (its header's).
    format: u64,
    /// Format 2: the callers' programs written as `process` records in
    /// this run, with their ids, keyed by the program and, for opens, their
    /// working directory, which the record holds and the opens naming it
    /// leave out.
    processes: std::collections::HashMap<(crate::action::ProcessInfo, Option<PathBuf>), u64>,
    /// The entry of `processes` the last decision named.
    last_process: Option<(u64, (crate::action::ProcessInfo, Option<PathBuf>))>,
}

/// Appends runs to one ledger file.
pub struct LedgerWriter {
    path: PathBuf,
    file: File,
    key: HostKey,
    host_vkey: String,
    host_fingerprint: String,
    opts: WriterOptions,
    next_seq: u64,
    last_hash: Option<Hash>,
    last_unit: Option<String>,
    run: Option<RunState>,
    buf: String,
    poisoned: bool,
    /// The signed note of the final checkpoint of the last run sealed.
    last_seal: Option<String>,
    stats: WriterStats,
    /// The record format written ([`record::FORMAT`] unless
    /// [`Self::with_format`] chose format 1).
    format: u64,
}

/// What this writer has written since it was opened (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records appended.
    pub records: u64,
    /// Bytes appended, newlines included.
    pub bytes: u64,
    /// When the last checkpoint was written.
    pub last_checkpoint: Option<SystemTime>,
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerWriter")
            .field("path", &self.path)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// The time records are written with: ns since the Unix epoch.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn open_ledger(
    path: &Path,
    lock: LockMode,
    on_wait: &mut dyn FnMut(&LedgerError),
) -> Result<File, LedgerError> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| LedgerError::io("open ledger", path, e))?;
    // Always try without blocking first: whoever waits is told at once who
    // holds the lock.
    let mut wait = crate::os::Wait::No;
    loop {
        let e = match crate::os::flock_exclusive(file.as_fd(), wait) {
            Ok(()) => return Ok(file),
            Err(e) => e,
        };
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => {
                let locked = LedgerError::Locked {
                    path: path.to_path_buf(),
                    holder: lock_holder(&file),
                };
                if lock == LockMode::Fail {
                    return Err(locked);
                }
                on_wait(&locked);
                wait = crate::os::Wait::Yes;
            }
            _ => return Err(LedgerError::io("lock", path, e)),
        }
    }
}

/// Who holds the `flock` of `file`, from `/proc/locks`: `pid N: COMMAND`
/// (the command shown escaped), or `None` when it cannot be told.
pub fn lock_holder(file: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = file.metadata().ok()?;
    let (major, minor) = (libc::major(m.dev()), libc::minor(m.dev()));
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; waiters have
        // `->` after the number.
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" {
            return None;
        }
        let mut id = f[5].split(':');
        let maj = u32::from_str_radix(id.next()?, 16).ok()?;
        let min = u32::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        (maj == major && min == minor && ino == m.ino())
            .then(|| f[4].parse::<u32>().ok())
            .flatten()
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(crate::escape::word)
        .collect();
    let mut command = words.join(" ");
    if command.chars().count() > 160 {
        command = command.chars().take(157).collect::<String>() + "...";
    }
    Some(if command.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid}: {command}")
    })
}

/// The end of a ledger file.
pub(crate) struct Tail {
    pub len: u64,
    /// Bytes after the last newline.
    pub torn: u64,
    /// The last complete line, without its newline.
    pub last_line: Option<Vec<u8>>,
}

pub(crate) fn read_tail(file: &File, path: &Path) -> Result<Tail, LedgerError> {
    let len = file
        .metadata()
        .map_err(|e| LedgerError::io("stat", path, e))?
        .len();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        if let Some(last) = buf.iter().rposition(|&b| b == b'\n') {
            let torn = (buf.len() - last - 1) as u64;
            if let Some(p) = buf[..last].iter().rposition(|&b| b == b'\n') {
                return Ok(Tail {
                    len,
                    torn,
                    last_line: Some(buf[p + 1..last].to_vec()),
                });
            }
            if start == 0 {
                return Ok(Tail {
                    len,
                    torn,
                    last_line: Some(buf[..last].to_vec()),
                });
            }
        } else if start == 0 {
            return Ok(Tail {
                len,
                torn: buf.len() as u64,
                last_line: None,
            });
        }
        let chunk = start.min(64 * 1024);
        start -= chunk;
        let mut piece = vec![0u8; chunk as usize];
        file.read_exact_at(&mut piece, start)
            .map_err(|e| LedgerError::io("read", path, e))?;
        piece.extend_from_slice(&buf);
        buf = piece;
    }
}

/// What the last complete line of a ledger says about where to continue.
pub(crate) struct LastRecord {
    pub seq: u64,
    pub hash: Hash,
    /// The unit (run or recovery) id, when the line is a final checkpoint.
    pub sealed_unit: Option<String>,
    pub kind: &'static str,
}

pub(crate) fn parse_last(line: &[u8], path: &Path) -> Result<LastRecord, LedgerError> {
    let damaged = |reason: String| LedgerError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(line).map_err(|_| damaged("not UTF-8".into()))?;
    let v = jcs::parse(text, jcs::Mode::Strict).map_err(|e| damaged(e.to_string()))?;
    let p = record::parse(&v).map_err(damaged)?;
    let sealed_unit = match &p.body {
        Body::Checkpoint {
            note,
            is_final: true,
        } => {
            let (body, _) = note::parse(note).map_err(damaged)?;
            let cp = Checkpoint::parse(body).map_err(damaged)?;
            let id = cp
                .origin
                .strip_prefix("lexecon/")
                .ok_or_else(|| damaged(format!("unexpected checkpoint origin {:?}", cp.origin)))?;
            Some(id.to_string())
        }
        _ => None,
    };
    Ok(LastRecord {
        seq: p.seq,
        hash: leaf_hash(line),
        sealed_unit,
        kind: p.kind.as_str(),
    })
}

impl LedgerWriter {
    /// Open (creating it and its parent directories, mode 0600/0700) the
    /// ledger at `path` for appending, taking its lock. Refuses a ledger
    /// that ends in a partial line or an unsealed run.
    pub fn open(path: &Path, key: HostKey, opts: WriterOptions) -> Result<Self, LedgerError> {
        Self::open_notify(path, key, opts, &mut |_| {})
    }

    /// As [`LedgerWriter::open`]; with [`LockMode::Wait`], when another
    /// writer holds the lock, `on_wait` is called at once with the
    /// [`LedgerError::Locked`] that [`LockMode::Fail`] would have returned
    /// (it names the holder), before waiting.
    pub fn open_notify(
        path: &Path,
        key: HostKey,
        opts: WriterOptions,
        on_wait: &mut dyn FnMut(&LedgerError),
    ) -> Result<Self, LedgerError> {
        if opts.checkpoint_every == 0 {
            return Err(LedgerError::Misuse(
                "checkpoint_every must be at least 1".into(),
            ));
        }
        let file = open_ledger(path, opts.lock, on_wait)?;
        let tail = read_tail(&file, path)?;
        if tail.torn > 0 {
            return Err(LedgerError::TornTail {
                path: path.to_path_buf(),
                len: tail.torn,
            });
        }
        let (next_seq, last_hash, last_unit) = match &tail.last_line {
            None => (0, None, None),
            Some(line) => {
                let last = parse_last(line, path)?;
                let Some(unit) = last.sealed_unit else {
                    return Err(LedgerError::Unsealed {
                        path: path.to_path_buf(),
                        kind: last.kind.to_string(),
                    });
                };
                (last.seq + 1, Some(last.hash), Some(unit))
            }
        };
        let public = key.public();
        Ok(LedgerWriter {
            path: path.to_path_buf(),
            file,
            host_vkey: public.to_vkey(),
            host_fingerprint: public.fingerprint(),
            key,
            opts,
            next_seq,
            last_hash,
            last_unit,
            run: None,
            buf: String::with_capacity(1024),
            poisoned: false,
            last_seal: None,
            stats: WriterStats::default(),
            format: record::FORMAT,
        })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The signed note of the final checkpoint of the last run this writer
    /// sealed (what an anchor is made of), once `end_run` succeeded.
    pub fn last_seal(&self) -> Option<&str> {
        self.last_seal.as_deref()
    }

    /// Records and bytes written so far, and the time of the last checkpoint.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Write `self.buf` (one canonical record, no newline) as one line.
    fn emit(&mut self) -> Result<Hash, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned {
                path: self.path.clone(),
            });
        }
        let h = leaf_hash(self.buf.as_bytes());
        self.buf.push('\n');
        if let Err(e) = (&self.file).write_all(self.buf.as_bytes()) {
            self.poisoned = true;
            return Err(LedgerError::io("append a record to", &self.path, e));
        }
        self.last_hash = Some(h);
        self.next_seq += 1;
        self.stats.records += 1;
        self.stats.bytes += self.buf.len() as u64;
        if let Some(run) = self.run.as_mut() {
            run.tree.push(h);
        }
        if self.opts.sync == SyncPolicy::EveryRecord {
            self.sync()?;
        }
        Ok(h)
    }

    fn sync(&mut self) -> Result<(), LedgerError> {
        if let Err(e) = self.file.sync_data() {
            self.poisoned = true;
            return Err(LedgerError::io("fdatasync", &self.path, e));
        }
        Ok(())
    }

    fn emit_line(&mut self, line: Result<String, String>) -> Result<Hash, LedgerError> {
        let line = line.map_err(LedgerError::Encode)?;
        self.buf.clear();
        self.buf.push_str(&line);
        self.emit()
    }

    /// Start a run: write its header and the first checkpoint (signed by the
    /// host key).
    pub fn begin_run(&mut self, header: RunHeader) -> Result<RunInfo, LedgerError> {
        if self.run.is_some() {
            return Err(LedgerError::Misuse(
                "begin_run called while a run is open".into(),
            ));
        }
        let id = random_id();
        let epoch_key = SigningKey::generate(&mut OsRng);
        let first_seq = self.next_seq;
        // A header's `prev` is hex in every format: it opens the run.
        let line = record::encode_header(
            first_seq,
            self.last_hash.map(|hash| record::Prev {
                hash,
                base64: false,
            }),
            &header,
            &record::HeaderExtra {
                run_id: &id,
                time_ns: now_ns(),
                host_vkey: &self.host_vkey,
                host_fingerprint: &self.host_fingerprint,
                epoch_key: epoch_key.verifying_key().as_bytes(),
                prev_run: self.last_unit.as_deref(),
                format: self.format,
            },
        );
        self.run = Some(RunState {
            origin: origin(&id),
            id: id.clone(),
            tree: CompactRange::new(),
            epoch: 0,
            epoch_key,
            pending: 0,
            oldest_pending: None,
            counts: Counts::default(),
            mode: header.mode,
            format: self.format,
            processes: std::collections::HashMap::new(),
            last_process: None,
        });
        self.emit_line(line)?;
        self.checkpoint(CheckpointKind::First)?;
        Ok(RunInfo {
            origin: origin(&id),
            run_id: id,
            first_seq,
            host_fingerprint: self.host_fingerprint.clone(),
        })
    }

    /// Record one decision; it is written (`write(2)` returned) before this
    /// returns. Signs a checkpoint right after a block, refusal or kill, and
    /// when N records or T time have accumulated.
    pub fn append_decision(&mut self, d: &DecisionEntry<'_>) -> Result<u64, LedgerError> {
        self.append_decision_at(d, now_ns())
    }

    /// [`Self::append_decision`] with the time the caller read (with
    /// [`now_ns`]) and decided by: what was decided from the time is then
    /// re-derivable from the record.
    pub fn append_decision_at(
        &mut self,
        d: &DecisionEntry<'_>,
        time_ns: u128,
    ) -> Result<u64, LedgerError> {
        let refused = d.verdict == Verdict::Block || d.outcome != Outcome::Allowed;
        let compact = match self.run.as_ref().map(|r| (r.mode, r.format)) {
            Some((mode, 2)) => Some(record::Compact {
                mode,
                process: self.process_id(d.action, time_ns)?,
            }),
            _ => None,
        };
        self.append(
            "append_decision",
            |seq, prev, buf| record::encode_decision(seq, prev, time_ns, d, compact, buf),
            Some((d.verdict, d.outcome)),
            Sign::IfDueOr(refused),
            |_| {},
        )
    }

    /// Format 2: the id of the `process` record of the caller's program of
    /// `action` (an open or connect action that names it), writing that
    /// record first when it is the run's first action of that program.
    fn process_id(
        &mut self,
        action: &crate::action::Action,
        time_ns: u128,
    ) -> Result<Option<u64>, LedgerError> {
        use crate::action::Action;
        let (p, cwd) = match action {
            Action::Open(o) => (o.process.as_ref(), Some(&o.cwd)),
            Action::Connect(c) => (c.process.as_ref(), None),
            Action::Exec(_) | Action::Tool(_) => (None, None),
        };
        let (Some(p), Some(run)) = (p, self.run.as_mut()) else {
            return Ok(None);
        };
        // Most decisions follow one of the same caller: no key is built.
        if let Some((id, (lp, lc))) = &run.last_process {
            if lp == p && lc.as_ref() == cwd {
                return Ok(Some(*id));
            }
        }
        let key = (p.clone(), cwd.cloned());
        if let Some(id) = run.processes.get(&key) {
            run.last_process = Some((*id, key));
            return Ok(Some(*id));
        }
        let id = run.processes.len() as u64 + 1;
        self.append(
            "append_decision",
            |seq, prev, buf| {
                record::encode_process_record(
                    seq,
                    prev,
                    time_ns,
                    id,
                    p,
                    cwd.map(PathBuf::as_path),
                    buf,
                )
            },
            None,
            Sign::Later,
            |_| {},
        )?;
        if let Some(run) = self.run.as_mut() {
            run.processes.insert(key.clone(), id);
            run.last_process = Some((id, key));
        }
        Ok(Some(id))
    }

    /// Write records in format `format` (1: as lexecon wrote them before
    /// formats were numbered, for tests and for tools that read only
    /// format 1; 2: [`record::FORMAT`], the default). Takes effect at the
    /// next run header; a run keeps the format its header says.
    pub fn with_format(mut self, format: u64) -> Result<Self, LedgerError> {
        if !(1..=record::FORMAT).contains(&format) {
            return Err(LedgerError::Misuse(format!(
                "record format {format} is not one this lexecon writes (1 to {})",
                record::FORMAT
            )));
        }
        self.format = format;
        Ok(self)
    }

    /// Appends an `intent` record (an action asked about through the gate
    /// and the answer given); signs a checkpoint right after a refusal, as
    /// after a block.
    pub fn append_intent(
        &mut self,
        d: &super::record::IntentEntry<'_>,
        time_ns: u128,
    ) -> Result<u64, LedgerError> {
        self.append(
            "append_intent",
            |seq, prev, buf| record::encode_intent(seq, prev, time_ns, d, buf),
            None,
            Sign::IfDueOr(d.outcome != Outcome::Allowed),
            |_| {},
        )
    }

    /// Appends a `limit` record (a rate limit reached, the breaker
    /// tripped) with the time of the decision it changes, which follows it
    /// (and the checkpoint after that decision's block).
    pub fn append_limit(
        &mut self,
        l: &super::record::LimitEntry<'_>,
        time_ns: u128,
    ) -> Result<u64, LedgerError> {
        // The block it is written for follows at once, and signs the
        // checkpoint after both.
        self.append(
            "append_limit",
            |seq, prev, buf| record::encode_limit(seq, prev, time_ns, l, buf),
            None,
            Sign::Later,
            |_| {},
        )
    }

    /// Appends a refusal record (a call refused without being judged as an
    /// action) and signs a checkpoint right after it, as after a block.
    pub fn append_refusal(
        &mut self,
        r: &super::record::RefusalEntry<'_>,
    ) -> Result<u64, LedgerError> {
        self.append(
            "append_refusal",
            |seq, prev, buf| record::encode_refusal(seq, prev, now_ns(), r, buf),
            None,
            Sign::Now,
            |_| {},
        )
    }

    /// Appends a `dns` record (an answer the supervisor obtained and the
    /// names it binds).
    pub fn append_dns(&mut self, d: &super::record::DnsEntry<'_>) -> Result<u64, LedgerError> {
        self.append(
            "append_dns",
            |seq, prev, buf| record::encode_dns(seq, prev, now_ns(), d, buf),
            None,
            Sign::Later,
            |_| {},
        )
    }

    /// Appends an escalation record (a held question) and signs a
    /// checkpoint right after it: the question is on record before anyone
    /// is asked. Returns its seq and its hash (what approval receipts sign).
    pub fn append_escalation(
        &mut self,
        e: &super::record::EscalationEntry<'_>,
    ) -> Result<(u64, Hash), LedgerError> {
        let mut hash = None;
        let seq = self.append(
            "append_escalation",
            |seq, prev, buf| record::encode_escalation(seq, prev, now_ns(), e, buf),
            None,
            Sign::Now,
            |w| hash = w.last_hash,
        )?;
        let hash = hash.ok_or_else(|| LedgerError::Misuse("no record hash".into()))?;
        Ok((seq, hash))
    }

    /// Appends a resolution record (the answer to an escalation) and signs a
    /// checkpoint right after it.
    pub fn append_resolution(
        &mut self,
        r: &super::record::ResolutionEntry<'_>,
    ) -> Result<u64, LedgerError> {
        self.append(
            "append_resolution",
            |seq, prev, buf| record::encode_resolution(seq, prev, now_ns(), r, buf),
            None,
            Sign::Now,
            |_| {},
        )
    }

    /// Appends one record of the open run: `encode` writes it given its seq
    /// and the previous record's hash; `counts` is the decision it adds to
    /// the run's counts; `sign` says when a checkpoint follows; `written`
    /// sees the writer right after the record (before its checkpoint).
    /// `what` names the caller in the error for a record outside a run.
    fn append(
        &mut self,
        what: &str,
        encode: impl FnOnce(u64, Option<record::Prev>, &mut String) -> Result<(), String>,
        counts: Option<(Verdict, Outcome)>,
        sign: Sign,
        written: impl FnOnce(&Self),
    ) -> Result<u64, LedgerError> {
        let seq = self.next_seq;
        let prev = self.link();
        let Some(run) = self.run.as_mut() else {
            return Err(LedgerError::Misuse(format!("{what} called outside a run")));
        };
        self.buf.clear();
        encode(seq, prev, &mut self.buf).map_err(LedgerError::Encode)?;
        if let Some((verdict, outcome)) = counts {
            run.counts.add(verdict, outcome);
        }
        run.pending += 1;
        let oldest = *run.oldest_pending.get_or_insert_with(Instant::now);
        let checkpoint = match sign {
            Sign::Now => true,
            Sign::IfDueOr(now) => {
                now || run.pending >= self.opts.checkpoint_every
                    || oldest.elapsed() >= self.opts.checkpoint_interval
            }
            Sign::Later => false,
        };
        self.emit()?;
        written(self);
        if checkpoint {
            self.checkpoint(CheckpointKind::Regular)?;
        }
        Ok(seq)
    }

    /// The `prev` of the next record of the current run: the last line's
    /// hash, in base64 in a format-2 run (`record::Prev`).
    fn link(&self) -> Option<record::Prev> {
        let base64 = self.run.as_ref().is_some_and(|r| r.format >= 2);
        self.last_hash.map(|hash| record::Prev { hash, base64 })
    }

    /// Sign a checkpoint if records have waited longer than T. Call it from
    /// an idle loop.
    pub fn checkpoint_if_due(&mut self) -> Result<(), LedgerError> {
        let due = match &self.run {
            Some(run) => run
                .oldest_pending
                .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_interval),
            None => false,
        };
        if due {
            self.checkpoint(CheckpointKind::Regular)?;
        }
        Ok(())
    }

    /// End the run: write the end record with the counts and the final
    /// checkpoint, signed by the epoch key and the host key, then sync.
    pub fn end_run(&mut self, end: RunEnd) -> Result<(), LedgerError> {
        let seq = self.next_seq;
        let prev = self.link();
        let Some(run) = self.run.as_ref() else {
            return Err(LedgerError::Misuse("end_run called outside a run".into()));
        };
        let line = record::encode_end(seq, prev, now_ns(), &end, &run.counts);
        self.emit_line(line)?;
        // The final checkpoint is synced like every checkpoint (unless the
        // policy is `Never`).
        self.checkpoint(CheckpointKind::Final)?;
        if let Some(run) = self.run.take() {
            self.last_unit = Some(run.id);
        }
        Ok(())
    }

    fn checkpoint(&mut self, kind: CheckpointKind) -> Result<(), LedgerError> {
        // A regular checkpoint first commits to the next epoch's key.
        let next = if kind == CheckpointKind::Regular {
            let k = SigningKey::generate(&mut OsRng);
            let (seq, prev) = (self.next_seq, self.link());
            let epoch = self.run.as_ref().map(|r| r.epoch + 1).unwrap_or(1);
            let line =
                record::encode_epoch(seq, prev, now_ns(), epoch, k.verifying_key().as_bytes());
            self.emit_line(line)?;
            Some(k)
        } else {
            None
        };
        let Some(run) = self.run.as_mut() else {
            return Err(LedgerError::Misuse("checkpoint outside a run".into()));
        };
        let body = Checkpoint {
            origin: run.origin.clone(),
            size: run.tree.size(),
            root: run.tree.root(),
        }
        .body();
        let epoch_name = epoch_key_name(run.epoch);
        let host = (self.key.name(), self.key.signing_key());
        let epoch = (epoch_name.as_str(), &run.epoch_key);
        let signed = match kind {
            CheckpointKind::First => note::sign(&body, &[host]),
            CheckpointKind::Regular => note::sign(&body, &[epoch]),
            CheckpointKind::Final => note::sign(&body, &[epoch, host]),
        };
        if let Some(k) = next {
            // The old key is dropped here, which zeroizes it.
            run.epoch_key = k;
            run.epoch += 1;
        }
        run.pending = 0;
        run.oldest_pending = None;
        let line = record::encode_checkpoint(
            self.next_seq,
            self.link(),
            &signed,
            kind == CheckpointKind::Final,
        );
        self.emit_line(line)?;
        self.stats.last_checkpoint = Some(SystemTime::now());
        if self.opts.sync == SyncPolicy::Checkpoint {
            self.sync()?;
        }
        if kind == CheckpointKind::Final {
            self.last_seal = Some(signed);
        }
        Ok(())
    }
}

/// When a record appended to a run is followed by a signed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    /// At once (blocks, refusals, escalations, resolutions).
    Now,
    /// When `true`, or when N records or T time have accumulated.
    IfDueOr(bool),
    /// With a later record (or when T has passed, at a tick).
    Later,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointKind {
    First,
    Regular,
    Final,
}

/// What `ledger recover` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Length of the partial last line that was removed (0 if none).
    pub torn_bytes: u64,
    /// SHA-256 of the removed bytes.
    pub torn_sha256: Option<Hash>,
    /// The run that had no end seal, if any.
    pub unsealed_run: Option<String>,
    /// Sequence number of the recovery record.
    pub seq: u64,
}

/// Seal a ledger whose last line is torn or whose last run has no end seal,
/// so that appending can continue: remove the partial line (its length and
/// SHA-256 are recorded), then append a `recovery` record and a final
/// checkpoint signed by the host key. The affected run stays visibly
/// "recovered" in `verify`.
pub fn recover(path: &Path, key: HostKey) -> Result<Recovered, LedgerError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| LedgerError::io("open ledger", path, e))?;
    drop(file);
    let file = open_ledger(path, LockMode::Fail, &mut |_| {})?;
    let tail = read_tail(&file, path)?;
    let last = match &tail.last_line {
        Some(l) => Some(parse_last(l, path)?),
        None => None,
    };
    let sealed = match &last {
        None => true,
        Some(l) => l.sealed_unit.is_some(),
    };
    if tail.torn == 0 && sealed {
        return Err(LedgerError::NothingToRecover {
            path: path.to_path_buf(),
        });
    }
    let mut torn_sha256 = None;
    if tail.torn > 0 {
        let start = tail.len - tail.torn;
        let mut torn = vec![0u8; tail.torn as usize];
        file.read_exact_at(&mut torn, start)
            .map_err(|e| LedgerError::io("read", path, e))?;
        torn_sha256 = Some(Sha256::digest(&torn).into());
        file.set_len(start)
            .map_err(|e| LedgerError::io("truncate", path, e))?;
    }
    // Find the last run (or recovery) id: the one left unsealed, or the one
    // to link to.
    let last_unit = last_unit_id(path)?;
    let unsealed_run = if sealed { None } else { last_unit.clone() };
    let (seq, prev) = match &last {
        Some(l) => (l.seq + 1, Some(l.hash)),
        None => (0, None),
    };
    let id = random_id();
    let public = key.public();
    let vkey = public.to_vkey();
    let fp = public.fingerprint();
    let line = record::encode_recovery(
        seq,
        prev.map(|hash| record::Prev {
            hash,
            base64: false,
        }),
        &record::RecoveryFields {
            id: &id,
            time_ns: now_ns(),
            host_vkey: &vkey,
            host_fingerprint: &fp,
            torn_bytes: tail.torn,
            torn_sha256,
            unsealed_run: unsealed_run.as_deref(),
            prev_run: last_unit.as_deref(),
        },
    )
    .map_err(LedgerError::Encode)?;
    let h = leaf_hash(line.as_bytes());
    let body = Checkpoint {
        origin: origin(&id),
        size: 1,
        root: h,
    }
    .body();
    let signed = note::sign(&body, &[(key.name(), key.signing_key())]);
    let cp = record::encode_checkpoint(
        seq + 1,
        Some(record::Prev {
            hash: h,
            base64: false,
        }),
        &signed,
        true,
    )
    .map_err(LedgerError::Encode)?;
    let out = format!("{line}\n{cp}\n");
    (&file)
        .write_all(out.as_bytes())
        .and_then(|_| file.sync_data())
        .map_err(|e| LedgerError::io("append the recovery seal to", path, e))?;
    Ok(Recovered {
        torn_bytes: tail.torn,
        torn_sha256,
        unsealed_run,
        seq,
    })
}

/// The id of the last run or recovery header in the file (a full scan:
/// recovery is rare).
fn last_unit_id(path: &Path) -> Result<Option<String>, LedgerError> {
    use std::io::BufRead as _;
    let f = File::open(path).map_err(|e| LedgerError::io("open ledger", path, e))?;
    let mut r = io::BufReader::new(f);
    let mut line = Vec::new();
    let mut last = None;
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| LedgerError::io("read", path, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let Ok(text) = std::str::from_utf8(&line[..line.len() - 1]) else {
            continue;
        };
        let Ok(v) = jcs::parse(text, jcs::Mode::Strict) else {
            continue;
        };
        if let Ok(p) = record::parse(&v) {
            match p.body {
                Body::Run { id, .. } | Body::Recovery { id, .. } => last = Some(id),
                _ => {}
            }
        }
    }
    Ok(last)
}
