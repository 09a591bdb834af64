//! The C2SP signed-note and checkpoint parsers (anchors, proofs and the
//! verifier read them): never a panic, and a note opened by a key was
//! signed by it.
#![no_main]
use lexecon::ledger::note::{self, Checkpoint, NoteVerifier};
use libfuzzer_sys::fuzz_target;

const VKEY: &str = "lexecon+d8c14674+Ab3IDyyMdEnaVRqh7QVK+4m8cWnbPHrAjInq8vzJR6Bt";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = note::parse(text);
    let _ = Checkpoint::parse(text);
    let known = [NoteVerifier::parse(VKEY).expect("the test key parses")];
    if let Ok(opened) = note::open(text, &known) {
        // A random input cannot carry a valid Ed25519 signature by this key.
        panic!("a note no one signed was opened: {:?}", opened.text);
    }
});
