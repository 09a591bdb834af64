//! The tlog-proof parser of `verify-proof`: never a panic, and an index
//! is accepted only in its one decimal spelling.
#![no_main]
use lexecon::ledger::proof::Proof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Proof::parse(text) {
        // The index line follows the header and the optional `extra` line.
        let line = text
            .lines()
            .skip(1)
            .find(|l| !l.starts_with("extra "))
            .unwrap_or_default();
        assert_eq!(line, format!("index {}", p.index), "{text:?}");
    }
});
