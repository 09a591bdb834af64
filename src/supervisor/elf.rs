//! What an ELF file says about the files it needs to run: its interpreter
//! (`PT_INTERP`) and the libraries it names (`DT_NEEDED`).
//!
//! Only read to guess which files a command will map, so that they can be
//! hashed before it starts (see [`super::prehash`]) or to know the system's
//! loader ([`super::loader`]); nothing is judged on it. A file that is not
//! a 64-bit little-endian ELF file, or one whose headers point outside it,
//! yields nothing. Every read is bounded.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;

/// Program headers read at most.
const MAX_PHDRS: usize = 256;
/// Bytes of the dynamic section read at most.
const MAX_DYNAMIC: u64 = 64 * 1024;
/// Bytes of the string table read at most.
const MAX_STRTAB: u64 = 1024 * 1024;
/// Libraries named at most.
const MAX_NEEDED: usize = 128;

/// One program header (the fields used here).
#[derive(Clone, Copy, Debug)]
struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// The headers of an ELF64 little-endian file.
pub struct Elf<'a> {
    file: &'a File,
    phdrs: Vec<Phdr>,
}

fn read_at(file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok()?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

impl<'a> Elf<'a> {
    /// Reads the file header and program headers; `None` for anything but
    /// a well-formed ELF64 little-endian file.
    pub fn read(file: &'a File) -> Option<Elf<'a>> {
        let head = read_at(file, 0, 64)?;
        if head.get(..6)? != b"\x7fELF\x02\x01" {
            return None;
        }
        let phoff = u64_at(&head, 0x20)?;
        let phentsize = u16_at(&head, 0x36)?;
        let phnum = usize::from(u16_at(&head, 0x38)?);
        if phentsize != 56 || phnum > MAX_PHDRS {
            return None;
        }
        let table = read_at(file, phoff, 56 * phnum as u64)?;
        let phdrs = (0..phnum)
            .map(|i| {
                let o = i * 56;
                Some(Phdr {
                    kind: u32_at(&table, o)?,
                    offset: u64_at(&table, o + 8)?,
                    vaddr: u64_at(&table, o + 16)?,
                    filesz: u64_at(&table, o + 32)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Elf { file, phdrs })
    }

    /// The interpreter it names (`PT_INTERP`), if any.
    pub fn interpreter(&self) -> Option<PathBuf> {
        let ph = self.phdrs.iter().find(|p| p.kind == PT_INTERP)?;
        if ph.filesz > 4096 {
            return None;
        }
        let bytes = read_at(self.file, ph.offset, ph.filesz)?;
        let bytes = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
        if bytes.is_empty() || bytes.contains(&0) {
            return None;
        }
        Some(PathBuf::from(OsString::from_vec(bytes.to_vec())))
    }

    /// The file offset of the virtual address `addr`, through the loaded
    /// segments.
    fn offset_of(&self, addr: u64) -> Option<u64> {
        self.phdrs
            .iter()
            .filter(|p| p.kind == PT_LOAD)
            .find(|p| addr >= p.vaddr && addr - p.vaddr < p.filesz)
            .and_then(|p| p.offset.checked_add(addr - p.vaddr))
    }

    /// The libraries it names (`DT_NEEDED`), in order.
    pub fn needed(&self) -> Vec<OsString> {
        self.try_needed().unwrap_or_default()
    }

    fn try_needed(&self) -> Option<Vec<OsString>> {
        let ph = self.phdrs.iter().find(|p| p.kind == PT_DYNAMIC)?;
        let dynamic = read_at(self.file, ph.offset, ph.filesz.min(MAX_DYNAMIC) & !15)?;
        let (mut names, mut strtab, mut strsz) = (Vec::new(), None, None);
        for entry in dynamic.chunks_exact(16) {
            let (tag, val) = (u64_at(entry, 0)?, u64_at(entry, 8)?);
            match tag {
                DT_NULL => break,
                DT_NEEDED if names.len() < MAX_NEEDED => names.push(val),
                DT_STRTAB => strtab = Some(val),
                DT_STRSZ => strsz = Some(val),
                _ => {}
            }
        }
        let (strtab, strsz) = (strtab?, strsz?.min(MAX_STRTAB));
        let table = read_at(self.file, self.offset_of(strtab)?, strsz)?;
        Some(
            names
                .into_iter()
                .filter_map(|o| {
                    let rest = table.get(usize::try_from(o).ok()?..)?;
                    let name = &rest[..rest.iter().position(|&b| b == 0)?];
                    (!name.is_empty()).then(|| OsString::from_vec(name.to_vec()))
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_supervisor_itself_names_its_interpreter_and_libraries() {
        let exe = File::open("/proc/self/exe").unwrap();
        let elf = Elf::read(&exe).expect("the test binary is ELF64");
        let interp = elf.interpreter().expect("dynamically linked");
        assert!(interp.is_absolute(), "{interp:?}");
        let needed = elf.needed();
        assert!(
            needed
                .iter()
                .any(|n| n.to_string_lossy().starts_with("libc.so")),
            "{needed:?}"
        );
    }

    #[test]
    fn other_files_yield_nothing() {
        let dir = std::env::temp_dir().join(format!("lexecon-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, Vec<u8>); 4] = [
            ("empty", vec![]),
            ("script", b"#!/bin/sh\necho hi\n".to_vec()),
            ("elf32", b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0".to_vec()),
            // An ELF64 header whose program headers lie past the end.
            ("truncated", {
                let mut h = b"\x7fELF\x02\x01\x01".to_vec();
                h.resize(64, 0);
                h[0x20..0x28].copy_from_slice(&4096u64.to_le_bytes());
                h[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
                h[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
                h
            }),
        ];
        for (name, bytes) in cases {
            let p = dir.join(name);
            File::create(&p).unwrap().write_all(&bytes).unwrap();
            let f = File::open(&p).unwrap();
            assert!(Elf::read(&f).is_none(), "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupted_dynamic_section_yields_no_libraries_and_no_panic() {
        // Flip bytes across the first 64 KiB of a real program: whatever
        // the headers then say, reading them stays in bounds.
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let dir = std::env::temp_dir().join(format!("lexecon-elf-x-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("mutant");
        let head = exe.len().min(64 * 1024);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let mut m = exe[..head].to_vec();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % head;
                m[i] = (seed >> 32) as u8;
            }
            std::fs::write(&p, &m).unwrap();
            let f = File::open(&p).unwrap();
            if let Some(elf) = Elf::read(&f) {
                let _ = elf.interpreter();
                assert!(elf.needed().len() <= MAX_NEEDED);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
