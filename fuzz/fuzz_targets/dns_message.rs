//! What the supervisor parses of the tree's network traffic: socket
//! addresses and DNS messages (queries from the tree, answers from the
//! resolver). Never a panic; every name found is a name.
#![no_main]
use lexecon::supervisor::net::{dns_bindings, dns_names, parse_sockaddr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_sockaddr(data);
    if let Some(names) = dns_names(data) {
        for n in names {
            assert!(n.len() <= 255, "{n:?}");
        }
    }
    for (name, _addr) in dns_bindings(data) {
        assert!(name.len() <= 255, "{name:?}");
    }
});
