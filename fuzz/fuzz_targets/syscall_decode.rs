//! The notification decoder: a syscall number and six arguments, with the
//! caller's memory made of fuzz bytes at a fixed address (pointers in the
//! arguments are bent into it half the time). Whatever the tree passes, the
//! decoder returns a request or an error, never a panic, never a read
//! outside what the memory offers.
#![no_main]
use lexecon::supervisor::decode::{decode, TraceeMemory};
use lexecon::supervisor::filter::NOTIFIED;
use lexecon::supervisor::sys::Notif;
use libfuzzer_sys::fuzz_target;

const BASE: u64 = 0x7f00_0000_0000;

struct Memory<'a>(&'a [u8]);

impl TraceeMemory for Memory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(off) = addr.checked_sub(BASE) else {
            return Ok(0);
        };
        let Ok(off) = usize::try_from(off) else {
            return Ok(0);
        };
        if off >= self.0.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.0.len() - off);
        buf[..n].copy_from_slice(&self.0[off..off + n]);
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 + 6 * 8 + 1 {
        return;
    }
    let nr = NOTIFIED[usize::from(data[0]) % NOTIFIED.len()];
    let bend = data[1];
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[2 + i * 8..10 + i * 8]);
        *a = u64::from_le_bytes(b);
    }
    let mem = &data[50..];
    for (i, a) in args.iter_mut().enumerate() {
        if bend & (1 << i) != 0 && !mem.is_empty() {
            *a = BASE + (*a % mem.len() as u64);
        }
    }
    let n = Notif {
        id: 1,
        pid: 1,
        nr: nr as i32,
        arch: 0xc000_003e,
        args,
    };
    let _ = decode(&n, &Memory(mem));
});
