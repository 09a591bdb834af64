//! The JCS (RFC 8785) parser that reads every ledger line: a strictly
//! accepted text is its own canonical form, and canonicalising is
//! idempotent.
#![no_main]
use lexecon::ledger::jcs::{self, Mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = jcs::parse(text, Mode::Strict) {
        let mut out = String::new();
        v.write_canonical(&mut out)
            .expect("a strictly parsed value re-encodes");
        assert_eq!(out, text, "a strictly accepted text is canonical");
    }
    if let Ok(canonical) = jcs::canonicalize(text) {
        let again = jcs::canonicalize(&canonical).expect("canonical text is accepted");
        assert_eq!(again, canonical, "canonicalisation is idempotent");
        jcs::parse(&canonical, Mode::Strict).expect("canonical text parses strictly");
    }
});
