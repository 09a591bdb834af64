//! The terminal prompt (`--on-escalate prompt`): held escalations are asked
//! on the supervisor's controlling terminal (`/dev/tty`), one at a time,
//! besides the approval socket.
//!
//! The supervised tree shares that terminal, so the prompt must not take
//! its answer from the tree:
//! - while asking, the supervisor makes its own process group the
//!   terminal's foreground group (the tree's reads of the terminal then stop
//!   it with `SIGTTIN` instead of consuming the human's keys), discards any
//!   input typed ahead, and gives the terminal back afterwards;
//! - every answer must end with a code of three random characters printed in
//!   the prompt: text pushed into the terminal's input by the tree
//!   (`TIOCSTI`) cannot carry it, since the tree cannot read what the
//!   supervisor writes to the terminal.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::escalation::{Answer, By, Escalations, Pending, Scope};
use crate::escape;
use crate::os;

/// The supervisor's controlling terminal.
pub struct Terminal {
    tty: File,
    /// Written when the run stops, so that an idle prompt sees it at once.
    wake: std::os::fd::OwnedFd,
}

impl Terminal {
    /// Opens `/dev/tty`; `None` when the supervisor has no controlling
    /// terminal.
    pub fn open() -> Option<Terminal> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open("/dev/tty")
            .ok()
            .and_then(|tty| {
                let wake = os::eventfd().ok()?;
                Some(Terminal { tty, wake })
            })
    }

    /// A waker for [`Terminal::serve`]: set its stop flag, then wake it.
    pub fn waker(&self) -> io::Result<crate::approval::Waker> {
        crate::approval::Waker::of(&self.wake)
    }

    /// Asks every held request in turn until `stop` is set.
    pub fn serve(self, table: Arc<Escalations>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            match table.list().into_iter().next() {
                Some(p) => {
                    if let Some(a) = self.ask(&p, &table, &stop) {
                        let _ = table.answer(p.id, a);
                    }
                }
                // Nothing to ask: wait for a request, or the stop's wake-up.
                None => {
                    let _ = os::poll_in(self.wake.as_fd(), 50);
                }
            }
        }
    }

    fn say(&self, s: &str) {
        let _ = (&self.tty).write_all(s.as_bytes());
    }

    /// Asks about `p` until it is answered here (`Some`), answered
    /// elsewhere or timed out (`None`).
    fn ask(&self, p: &Pending, table: &Escalations, stop: &AtomicBool) -> Option<Answer> {
        let mut code = random_code();
        let chain = parent_chain(p.pid);
        let left = p
            .deadline
            .saturating_duration_since(Instant::now())
            .as_secs();
        self.say(&format!(
            "\r\nlexecon: request {id} needs an answer ({left} s left)\r\n  {what}\r\n  rule {rule}: {reason}\r\n  process {chain}\r\n  [a] allow once  [A] allow for this run  [b] block once  [B] block for this run\r\n  type the letter, then the code {code} (e.g. a{code}), then Enter: ",
            id = p.id,
            what = escape::text(&p.what),
            rule = escape::text(&p.rule),
            reason = escape::text(&p.reason),
        ));
        let fg = Foreground::take(&self.tty);
        let mut line = Vec::new();
        let answer = loop {
            if stop.load(Ordering::SeqCst) || !table.is_pending(p.id) {
                self.say("\r\n  (answered elsewhere or timed out)\r\n");
                break None;
            }
            if Instant::now() >= p.deadline {
                self.say("\r\n  (timed out: blocked)\r\n");
                break None;
            }
            match read_byte(&self.tty, 100) {
                Ok(Some(b'\n')) | Ok(Some(b'\r')) => {
                    match parse(&line, &code) {
                        Some((allow, scope)) => {
                            self.say(&format!(
                                "\r\n  request {} {}{}\r\n",
                                p.id,
                                if allow { "allowed" } else { "blocked" },
                                if scope == Scope::Run {
                                    " for the rest of this run"
                                } else {
                                    ""
                                }
                            ));
                            let (uid, pid) = (crate::os::uid(), crate::os::pid());
                            break Some(Answer {
                                allow,
                                scope,
                                by: By::Terminal { uid, pid },
                                receipt: None,
                            });
                        }
                        None => {
                            // A fresh code for every attempt: guessing
                            // gains nothing from earlier tries.
                            code = random_code();
                            self.say(&format!(
                                "\r\n  not an answer: type a, A, b or B followed by the new code {code}: "
                            ));
                        }
                    }
                    line.clear();
                }
                Ok(Some(b)) => {
                    if line.len() < 64 {
                        line.push(b);
                    }
                }
                Ok(None) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        drop(fg);
        answer
    }
}

fn parse(line: &[u8], code: &str) -> Option<(bool, Scope)> {
    let s = std::str::from_utf8(line).ok()?.trim();
    let (letter, rest) = s.split_at(s.char_indices().nth(1)?.0);
    if rest.trim() != code {
        return None;
    }
    match letter {
        "a" => Some((true, Scope::Once)),
        "A" => Some((true, Scope::Run)),
        "b" => Some((false, Scope::Once)),
        "B" => Some((false, Scope::Run)),
        _ => None,
    }
}

/// Three characters, unambiguous to read.
fn random_code() -> String {
    const ALPHABET: &[u8] = b"23456789CDFGHJKMNPQRTVWXY";
    let mut b = [0u8; 3];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// `4242 (git) ← 4241 (sh) ← …`, up to five processes.
fn parent_chain(pid: i32) -> String {
    let mut parts = Vec::new();
    let mut p = pid;
    for _ in 0..5 {
        if p <= 1 {
            break;
        }
        // Read as bytes: the name is the process's own choice
        // (`prctl(PR_SET_NAME)`, the program's file name), UTF-8 or not.
        let Ok(status) = std::fs::read(format!("/proc/{p}/status")) else {
            break;
        };
        let field = |name: &[u8]| -> &[u8] {
            status
                .split(|&b| b == b'\n')
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_ascii())
                .unwrap_or_default()
        };
        parts.push(chain_entry(p, field(b"Name:")));
        p = std::str::from_utf8(field(b"PPid:"))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    if parts.is_empty() {
        format!("{pid} (gone)")
    } else {
        parts.join(" <- ")
    }
}

/// `4242 (git)`: a pid and its process name, escaped.
fn chain_entry(pid: i32, name: &[u8]) -> String {
    format!("{pid} ({})", escape::word(name))
}

/// One byte from the terminal, waiting at most `ms`.
fn read_byte(tty: &File, ms: i32) -> io::Result<Option<u8>> {
    if !os::poll_in(tty.as_fd(), ms)? {
        return Ok(None);
    }
    let mut b = [0u8; 1];
    match (&*tty).read(&mut b)? {
        1 => Ok(Some(b[0])),
        _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
    }
}

/// The terminal's foreground group is the supervisor's while it asks;
/// typed-ahead input is discarded.
struct Foreground<'a> {
    tty: &'a File,
    previous: Option<i32>,
}

impl<'a> Foreground<'a> {
    fn take(tty: &'a File) -> Foreground<'a> {
        let fd = tty.as_fd();
        // SIGTTOU is ignored by the supervisor, so tcsetpgrp from a
        // background group succeeds.
        let previous = os::tcgetpgrp(fd).ok();
        let _ = os::tcsetpgrp(fd, os::pgrp());
        let _ = os::tcflush_input(fd);
        Foreground { tty, previous }
    }
}

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.filter(|p| *p > 0) {
            let _ = os::tcsetpgrp(self.tty.as_fd(), previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_need_the_code() {
        assert_eq!(parse(b"aX7Q", "X7Q"), Some((true, Scope::Once)));
        assert_eq!(parse(b"A X7Q ", "X7Q"), Some((true, Scope::Run)));
        assert_eq!(parse(b"bX7Q", "X7Q"), Some((false, Scope::Once)));
        assert_eq!(parse(b"BX7Q", "X7Q"), Some((false, Scope::Run)));
        assert_eq!(parse(b"a", "X7Q"), None);
        assert_eq!(parse(b"aX7R", "X7Q"), None);
        assert_eq!(parse(b"yX7Q", "X7Q"), None);
        assert_eq!(random_code().len(), 3);
    }

    #[test]
    fn process_names_in_the_ancestry_are_escaped() {
        assert_eq!(chain_entry(7, b"git"), "7 (git)");
        assert_eq!(chain_entry(7, b"a\x1b[2Kb\r"), "7 ($'a\\x1b[2Kb\\r')");
        assert!(!parent_chain(std::process::id() as i32).contains('\x1b'));
    }
}
