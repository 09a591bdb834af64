//! G7 network: real clients (curl, Python) against servers each test starts
//! on loopback. Every attack is first run natively to show that it reaches
//! its target there; under supervision the forbidden server must see
//! nothing, and the ledger must verify.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// An HTTP server on `addr` (port 0: any) answering every request with
/// `hello`; the count of connections it accepted.
fn http_server(addr: &str) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind(addr).unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n",
                );
            });
        }
    });
    (port, hits)
}

fn python(env: &Env, policy: Option<&Path>, script: &str, envs: &[(&str, String)]) -> Output {
    let mut c = match policy {
        Some(p) => env.supervise_cmd(p, &["python3", "-c", script]),
        None => {
            let mut c = Command::new("python3");
            c.args(["-c", script])
                .current_dir(&env.ws)
                .stdin(Stdio::null());
            c
        }
    };
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn port_is(v: &serde_json::Value, port: u16) -> bool {
    v.as_str().and_then(|s| s.parse::<u16>().ok()) == Some(port)
}

fn connect_records(env: &Env) -> Vec<serde_json::Value> {
    env.records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["action"]["kind"] == "connect")
        .collect()
}

fn policy_with(env: &Env, default: &str, rules: &str) -> std::path::PathBuf {
    env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults: {{exec: allow, open: allow, connect: {default}}}\nrules:\n{rules}"
    ))
}

#[test]
fn curl_and_urllib_are_allowed_by_one_rule_and_refused_by_another() {
    let env = Env::new();
    let (port, hits) = http_server("127.0.0.1:0");
    let url = format!("http://127.0.0.1:{port}/");
    let allow = policy_with(
        &env,
        "block",
        &format!("  - id: local-web\n    connect: {{address: 127.0.0.1, port: {port}, protocol: tcp}}\n    decision: allow\n    reason: the test server\n"),
    );
    let refuse = policy_with(
        &env,
        "allow",
        &format!("  - id: no-web\n    connect: {{address: 127.0.0.0/8, port: {port}}}\n    decision: block\n    reason: not this server\n"),
    );
    let urllib = format!(
        "import urllib.request\ntry:\n  print(urllib.request.urlopen('{url}', timeout=5).read().decode().strip())\nexcept Exception as e:\n  print('refused', e)\n"
    );
    // Natively both reach it.
    let n = Command::new("curl").args(["-s", &url]).output().unwrap();
    assert_eq!(stdout(&n), "hello\n");
    assert_eq!(stdout(&python(&env, None, &urllib, &[])).trim(), "hello");
    let before = hits.load(Ordering::SeqCst);
    let o = env.supervise(&allow, &["curl", "-s", &url]);
    assert_eq!(stdout(&o), "hello\n", "{}", stderr(&o));
    let o = python(&env, Some(&allow), &urllib, &[]);
    assert_eq!(stdout(&o).trim(), "hello", "{}", stderr(&o));
    assert_eq!(hits.load(Ordering::SeqCst), before + 2);
    let o = env.supervise(&refuse, &["curl", "-s", &url]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("rule no-web"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "lexecon: 1 network action refused: connect 127.0.0.1:{port}\n"
        )),
        "{}",
        stderr(&o)
    );
    let o = python(&env, Some(&refuse), &urllib, &[]);
    assert!(stdout(&o).starts_with("refused"), "{}", stdout(&o));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before + 2,
        "a refused client reached the server"
    );
    let recs = connect_records(&env);
    let blocked: Vec<_> = recs.iter().filter(|r| r["rule"] == "no-web").collect();
    assert_eq!(blocked.len(), 2);
    for r in &blocked {
        assert_eq!(r["action"]["address"], "127.0.0.1");
        assert_eq!(r["action"]["port"], port.to_string());
        assert_eq!(r["action"]["protocol"], "tcp");
        assert_eq!(r["action"]["op"], "connect");
        assert_eq!(r["outcome"], "refused");
    }
    env.assert_valid();
}

#[test]
fn udp_sendto_and_sendmmsg_to_a_forbidden_address_send_nothing() {
    let env = Env::new();
    let rx = UdpSocket::bind("127.0.0.2:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b'secret-sendto', ('127.0.0.2', {port})); print('sendto sent')
except OSError as e:
    print('sendto refused', e.errno)
try:
    n = s.sendmsg([b'secret-sendmsg'], [], 0, ('127.0.0.2', {port})); print('sendmsg sent')
except OSError as e:
    print('sendmsg refused', e.errno)
"#
    );
    let native = python(&env, None, &script, &[]);
    assert_eq!(stdout(&native), "sendto sent\nsendmsg sent\n");
    let mut buf = [0u8; 64];
    assert!(rx.recv(&mut buf).is_ok() && rx.recv(&mut buf).is_ok());
    let p = policy_with(
        &env,
        "allow",
        "  - id: no-127-2\n    connect: {address: 127.0.0.2}\n    decision: block\n    reason: forbidden host\n",
    );
    let o = python(&env, Some(&p), &script, &[]);
    assert_eq!(
        stdout(&o),
        "sendto refused 1\nsendmsg refused 1\n",
        "{}",
        stderr(&o)
    );
    assert!(
        rx.recv(&mut buf).is_err(),
        "a datagram reached the forbidden address"
    );
    // sendmmsg, as a C program (Python has no binding).
    let prog = env.cc(
        "mmsg",
        &format!(
            r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int main(void) {{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {{0}};
    a.sin_family = AF_INET; a.sin_port = htons({port});
    inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
    struct iovec iov[2] = {{{{"one", 3}}, {{"two", 3}}}};
    struct mmsghdr m[2];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 2; i++) {{
        m[i].msg_hdr.msg_name = &a; m[i].msg_hdr.msg_namelen = sizeof a;
        m[i].msg_hdr.msg_iov = &iov[i]; m[i].msg_hdr.msg_iovlen = 1;
    }}
    int n = sendmmsg(s, m, 2, 0);
    printf("%d %d %u %u\n", n, n < 0 ? errno : 0, m[0].msg_len, m[1].msg_len);
    return 0;
}}
"#
        ),
    );
    let native = env.native(&[&prog]);
    assert_eq!(stdout(&native), "2 0 3 3\n");
    assert!(rx.recv(&mut buf).is_ok() && rx.recv(&mut buf).is_ok());
    let allow_all = policy_with(&env, "allow", "  []\n");
    let o = env.supervise(&allow_all, &[&prog]);
    assert_eq!(
        stdout(&o),
        "2 0 3 3\n",
        "supervised sendmmsg differs: {}",
        stderr(&o)
    );
    assert!(rx.recv(&mut buf).is_ok() && rx.recv(&mut buf).is_ok());
    let o = env.supervise(&p, &[&prog]);
    assert_eq!(stdout(&o), "-1 1 0 0\n", "{}", stderr(&o));
    assert!(
        rx.recv(&mut buf).is_err(),
        "sendmmsg reached the forbidden address"
    );
    let sends: Vec<_> = connect_records(&env)
        .into_iter()
        .filter(|r| r["action"]["op"] == "send" && r["outcome"] == "refused")
        .collect();
    assert_eq!(sends.len(), 3);
    assert!(sends.iter().all(|r| r["action"]["protocol"] == "udp"));
    env.assert_valid();
}

/// A DNS responder on 127.0.0.3: `NAME` → 127.0.0.1 for every name asked;
/// the names it was asked.
fn dns_responder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let s = UdpSocket::bind("127.0.0.3:0").unwrap();
    let port = s.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&asked);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            if n < 17 {
                continue;
            }
            let mut off = 12;
            let mut labels = Vec::new();
            while off < n && q[off] != 0 {
                let l = q[off] as usize;
                labels.push(String::from_utf8_lossy(&q[off + 1..off + 1 + l]).into_owned());
                off += 1 + l;
            }
            let qend = off + 5;
            a.lock().unwrap().push(labels.join("."));
            let mut r = q[..qend].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[6] = 0;
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
            let _ = s.send_to(&r, from);
        }
    });
    (port, asked)
}

#[test]
fn names_hold_a_forbidden_name_is_never_resolved_and_a_literal_is_judged_by_address() {
    let env = Env::new();
    let (dns_port, asked) = dns_responder();
    let (port, hits) = http_server("127.0.0.1:0");
    let (port2, hits2) = http_server("127.0.0.2:0");
    let script = format!(
        r#"
import socket, struct
def q(name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    pkt = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)
    pkt += b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0' + struct.pack('>HH', 1, 1)
    try:
        s.sendto(pkt, ('127.0.0.3', {dns_port}))
    except OSError as e:
        return 'refused %d' % e.errno
    data, _ = s.recvfrom(512)
    return socket.inet_ntoa(data[-4:])
def get(host, port):
    try:
        c = socket.create_connection((host, port), timeout=3)
        c.sendall(b'GET / HTTP/1.0\r\n\r\n')
        return c.recv(100).split(b'\r\n')[0].decode()
    except OSError as e:
        return 'refused %d' % e.errno
a = q('allowed.test')
print('allowed.test', a)
print('forbidden.test', q('forbidden.test'))
print('get', get(a, {port}))
print('literal', get('127.0.0.2', {port2}))
"#
    );
    let upstream = [("LEXECON_DNS_UPSTREAM", format!("127.0.0.3:{dns_port}"))];
    let native = python(&env, None, &script, &[]);
    assert_eq!(
        stdout(&native),
        "allowed.test 127.0.0.1\nforbidden.test 127.0.0.1\nget HTTP/1.0 200 OK\nliteral HTTP/1.0 200 OK\n"
    );
    asked.lock().unwrap().clear();
    let (h1, h2) = (hits.load(Ordering::SeqCst), hits2.load(Ordering::SeqCst));
    let p = policy_with(
        &env,
        "block",
        &format!(
            "  - id: allowed-name\n    connect: {{host: allowed.test, port: {port}}}\n    decision: allow\n    reason: the test's allowed host\n  - id: forbidden-name\n    connect: {{host: '*forbidden.test'}}\n    decision: block\n    reason: never resolve it\n"
        ),
    );
    let o = python(&env, Some(&p), &script, &upstream);
    assert_eq!(
        stdout(&o),
        "allowed.test 127.0.0.1\nforbidden.test refused 1\nget HTTP/1.0 200 OK\nliteral refused 1\n",
        "{}",
        stderr(&o)
    );
    let seen = asked.lock().unwrap().clone();
    assert!(!seen.iter().any(|n| n.contains("forbidden")), "{seen:?}");
    assert!(seen.iter().any(|n| n == "allowed.test"), "{seen:?}");
    assert_eq!(hits.load(Ordering::SeqCst), h1 + 1);
    assert_eq!(
        hits2.load(Ordering::SeqCst),
        h2,
        "the literal address was reached"
    );
    let recs = connect_records(&env);
    let resolved: Vec<_> = recs
        .iter()
        .filter(|r| r["action"]["op"] == "resolve")
        .collect();
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    assert_eq!(resolved[0]["action"]["name"], "allowed.test");
    assert_eq!(resolved[1]["action"]["name"], "forbidden.test");
    assert_eq!(resolved[1]["outcome"], "refused");
    let conn = recs
        .iter()
        .find(|r| r["action"]["op"] == "connect" && port_is(&r["action"]["port"], port))
        .unwrap();
    assert_eq!(conn["action"]["names"], serde_json::json!(["allowed.test"]));
    assert_eq!(conn["rule"], "allowed-name");
    let lit = recs
        .iter()
        .find(|r| r["action"]["address"] == "127.0.0.2")
        .unwrap();
    assert!(lit["action"].get("names").is_none());
    assert_eq!(lit["outcome"], "refused");
    // The answer the supervisor itself obtained is on record; the
    // forbidden name has none.
    let dns: Vec<_> = env
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "dns")
        .collect();
    assert_eq!(dns.len(), 1, "{dns:?}");
    assert_eq!(dns[0]["query"], "allowed.test");
    assert_eq!(dns[0]["rcode"], 0);
    assert_eq!(dns[0]["resolver"], format!("127.0.0.3:{dns_port}"));
    assert_eq!(
        dns[0]["bindings"],
        serde_json::json!([{"address": "127.0.0.1", "name": "allowed.test"}])
    );
    env.assert_valid();
    // Tampering with the answer's record is caught.
    let text = std::fs::read_to_string(&env.ledger).unwrap();
    let forged = text.replacen(
        r#"{"address":"127.0.0.1","name":"allowed.test"}"#,
        r#"{"address":"127.0.0.2","name":"allowed.test"}"#,
        1,
    );
    assert_ne!(forged, text);
    std::fs::write(&env.ledger, forged).unwrap();
    let (code, out) = env.verify();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("INVALID"), "{out}");
}

#[test]
fn ipv6_and_ipv4_mapped_destinations_are_judged_as_their_address() {
    let env = Env::new();
    let (port6, hits6) = http_server("[::1]:0");
    let (port, hits) = http_server("127.0.0.1:0");
    let script = format!(
        r#"
import socket
def get(fam, addr):
    try:
        c = socket.socket(fam, socket.SOCK_STREAM); c.settimeout(3); c.connect(addr)
        c.sendall(b'GET / HTTP/1.0\r\n\r\n')
        return c.recv(100).split(b'\r\n')[0].decode()
    except OSError as e:
        return 'refused %d' % e.errno
print('v6', get(socket.AF_INET6, ('::1', {port6})))
print('mapped', get(socket.AF_INET6, ('::ffff:127.0.0.1', {port})))
print('v4', get(socket.AF_INET, ('127.0.0.1', {port})))
"#
    );
    let native = python(&env, None, &script, &[]);
    assert_eq!(
        stdout(&native),
        "v6 HTTP/1.0 200 OK\nmapped HTTP/1.0 200 OK\nv4 HTTP/1.0 200 OK\n"
    );
    let (b6, b4) = (hits6.load(Ordering::SeqCst), hits.load(Ordering::SeqCst));
    let p = policy_with(
        &env,
        "allow",
        &format!("  - id: no-v4-server\n    connect: {{address: 127.0.0.1/32, port: {port}}}\n    decision: block\n    reason: judged as IPv4 whatever the form\n"),
    );
    let o = python(&env, Some(&p), &script, &[]);
    assert_eq!(
        stdout(&o),
        "v6 HTTP/1.0 200 OK\nmapped refused 1\nv4 refused 1\n",
        "{}",
        stderr(&o)
    );
    assert_eq!(hits6.load(Ordering::SeqCst), b6 + 1);
    assert_eq!(hits.load(Ordering::SeqCst), b4);
    let recs = connect_records(&env);
    let mapped = recs
        .iter()
        .find(|r| r["action"]["family"] == "inet6" && r["action"]["address"] == "127.0.0.1")
        .expect("the mapped connect is recorded as inet6 127.0.0.1");
    assert_eq!(mapped["rule"], "no-v4-server");
    env.assert_valid();
}

#[test]
fn a_unix_socket_path_rule_holds_through_relative_paths_and_symlinks() {
    use std::os::unix::net::UnixListener;
    let env = Env::new();
    std::fs::create_dir(env.ws.join("run")).unwrap();
    let sock = env.ws.join("run/agent.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(b"hi");
        }
    });
    std::os::unix::fs::symlink("run/agent.sock", env.ws.join("link.sock")).unwrap();
    let script = r#"
import socket
for p in ['run/agent.sock', 'link.sock', '\0lexecon-test-abstract-none']:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(p); print(repr(p), c.recv(2).decode())
    except OSError as e:
        print(repr(p), 'refused', e.errno)
"#;
    let native = python(&env, None, script, &[]);
    assert_eq!(
        stdout(&native),
        "'run/agent.sock' hi\n'link.sock' hi\n'\\x00lexecon-test-abstract-none' refused 111\n"
    );
    // Supervised with no rule against it: reached, through the symlink too.
    let all = policy_with(&env, "allow", "  []\n");
    let o = python(&env, Some(&all), script, &[]);
    assert_eq!(stdout(&o), stdout(&native), "{}", stderr(&o));
    let before = hits.load(Ordering::SeqCst);
    let p = policy_with(
        &env,
        "allow",
        &format!(
            "  - id: agent-sock\n    connect: {{path: '{}/run/*.sock', unless: {{process: {{name: ssh}}}}}}\n    decision: block\n    reason: only ssh may reach the agent socket\n  - id: abstract\n    connect: {{path: '@lexecon-test-*'}}\n    decision: block\n    reason: no abstract test sockets\n",
            env.ws.display()
        ),
    );
    let o = python(&env, Some(&p), script, &[]);
    assert_eq!(
        stdout(&o),
        "'run/agent.sock' refused 1\n'link.sock' refused 1\n'\\x00lexecon-test-abstract-none' refused 1\n",
        "{}",
        stderr(&o)
    );
    assert_eq!(hits.load(Ordering::SeqCst), before);
    let recs = connect_records(&env);
    let paths: Vec<_> = recs
        .iter()
        .filter(|r| r["action"]["family"] == "unix" && r["outcome"] == "refused")
        .map(|r| {
            (
                r["action"]["path"].clone(),
                r["action"]["abstract"].clone(),
                r["rule"].clone(),
            )
        })
        .collect();
    let want = serde_json::Value::String(sock.display().to_string());
    assert_eq!(paths[0].0, want, "{paths:?}");
    assert_eq!(
        paths[1].0, want,
        "the symlink is judged as its target: {paths:?}"
    );
    assert_eq!(paths[2].2, "abstract");
    env.assert_valid();
}

#[test]
fn nonblocking_connect_behaves_as_natively() {
    let env = Env::new();
    let (port, _) = http_server("127.0.0.1:0");
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let script = format!(
        r#"
import socket, select, errno
for port in [{port}, {closed}]:
    s = socket.socket(); s.setblocking(False)
    r = s.connect_ex(('127.0.0.1', port))
    print('connect_ex', errno.errorcode.get(r, r))
    select.select([], [s], [], 3)
    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    print('SO_ERROR', errno.errorcode.get(e, e))
    if e == 0:
        s.setblocking(True); s.sendall(b'GET / HTTP/1.0\r\n\r\n'); print(s.recv(12))
s = socket.socket(); s.settimeout(2)
print('blocking closed', s.connect_ex(('127.0.0.1', {closed})) == errno.ECONNREFUSED)
"#
    );
    let native = python(&env, None, &script, &[]);
    let p = policy_with(&env, "allow", "  []\n");
    let o = python(&env, Some(&p), &script, &[]);
    assert!(native.status.success(), "{}", stderr(&native));
    assert_eq!(stdout(&o), stdout(&native), "{}", stderr(&o));
    assert!(stdout(&o).contains("connect_ex EINPROGRESS\nSO_ERROR 0\n"));
    assert!(stdout(&o).contains("SO_ERROR ECONNREFUSED"));
    env.assert_valid();
}

/// A thread rewrites the sockaddr between the allowed and the forbidden
/// port while the main thread connects: natively some connects reach the
/// forbidden server; supervised none may.
#[test]
fn connect_address_race_never_reaches_a_forbidden_server() {
    let env = Env::new();
    let (ok_port, _) = http_server("127.0.0.1:0");
    let (bad_port, bad_hits) = http_server("127.0.0.1:0");
    let prog = env.cc_with(
        "race",
        &format!(
            r#"
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
static struct sockaddr_in a;
static volatile int stop;
static void *flip(void *x) {{
    (void)x;
    volatile unsigned short *port = &a.sin_port;
    while (!stop) {{
        *port = htons({bad_port});
        *port = htons({ok_port});
    }}
    return 0;
}}
int main(int argc, char **argv) {{
    int n = argc > 1 ? atoi(argv[1]) : 600;
    a.sin_family = AF_INET; a.sin_port = htons({ok_port});
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    pthread_t t; pthread_create(&t, 0, flip, 0);
    int ok = 0, refused = 0;
    for (int i = 0; i < n; i++) {{
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) ok++; else refused++;
        close(s);
    }}
    stop = 1; pthread_join(t, 0);
    printf("%d %d\n", ok, refused);
    return 0;
}}
"#
        ),
        &["-pthread"],
    );
    // Natively the flipping thread needs CPU time to win: try a few times.
    for _ in 0..10 {
        let native = env.native(&[&prog]);
        assert!(native.status.success());
        std::thread::sleep(Duration::from_millis(100));
        if bad_hits.load(Ordering::SeqCst) > 0 {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let native_wins = bad_hits.load(Ordering::SeqCst);
    assert!(
        native_wins > 0,
        "the race never won natively: the test proves nothing"
    );
    let p = policy_with(
        &env,
        "block",
        &format!("  - id: ok\n    connect: {{address: 127.0.0.1, port: {ok_port}}}\n    decision: allow\n    reason: the allowed server\n"),
    );
    let o = env
        .supervise_cmd_with(&p, &["--quiet"], &[&prog])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        bad_hits.load(Ordering::SeqCst),
        native_wins,
        "a rewritten sockaddr reached the forbidden server: {}",
        stdout(&o)
    );
    // Every connect judged forbidden is recorded with the forbidden port.
    let recs = connect_records(&env);
    assert!(recs
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .all(|r| port_is(&r["action"]["port"], bad_port)));
    env.assert_valid();
}

#[test]
fn a_held_connect_waits_for_approval_and_a_denied_one_fails() {
    let env = Env::new();
    let (port, hits) = http_server("127.0.0.1:0");
    let p = policy_with(
        &env,
        "allow",
        &format!("  - id: ask-web\n    connect: {{address: 127.0.0.1, port: {port}}}\n    decision: escalate\n    reason: a human decides\n"),
    );
    let script = format!(
        "import socket\nfor i in range(2):\n  try:\n    c = socket.create_connection(('127.0.0.1', {port}), timeout=30); print('connected')\n  except OSError as e:\n    print('refused', e.errno)\n"
    );
    let child = env
        .supervise_cmd_with(
            &p,
            &["--on-escalate", "wait", "--quiet"],
            &["python3", "-c", &script],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ask = |verb: &str, id: &str| {
        let t = Instant::now();
        loop {
            let out = Command::new(lexecon())
                .args(["pending", "--json", "--ledger"])
                .arg(&env.ledger)
                .output()
                .unwrap();
            if out.status.success() {
                let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
                if v.iter()
                    .any(|p| p["id"].as_u64().map(|n| n.to_string()).as_deref() == Some(id))
                {
                    break;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "request {id} never pending"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        let out = Command::new(lexecon())
            .args([verb, id, "--ledger"])
            .arg(&env.ledger)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    ask("approve", "1");
    ask("deny", "2");
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "connected\nrefused 1\n", "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    env.assert_valid();
}

#[test]
fn tampering_with_a_connect_record_is_caught() {
    let env = Env::new();
    let (port, _) = http_server("127.0.0.1:0");
    let p = policy_with(&env, "allow", "  []\n");
    let o = env.supervise(&p, &["curl", "-s", &format!("http://127.0.0.1:{port}/")]);
    assert!(o.status.success());
    env.assert_valid();
    let text = std::fs::read_to_string(&env.ledger).unwrap();
    let needle = format!("\"port\":\"{port}\"");
    assert!(text.contains(&needle));
    std::fs::write(&env.ledger, text.replacen(&needle, "\"port\":\"443\"", 1)).unwrap();
    let (code, out) = env.verify();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("INVALID"), "{out}");
}

/// A free loopback port (bound, then released for a server to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "server on {port} never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn git_clone_node_fetch_and_pip_download_are_allowed_by_one_rule_and_refused_by_another() {
    let env = Env::new();
    // A repository served by `git daemon`.
    let srv = env.root.join("srv");
    std::fs::create_dir_all(srv.join("repo")).unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    };
    git(&srv.join("repo"), &["init", "-q", "-b", "main"]);
    std::fs::write(srv.join("repo/README"), "served\n").unwrap();
    git(&srv.join("repo"), &["add", "README"]);
    git(
        &srv.join("repo"),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "one",
        ],
    );
    let git_port = free_port();
    let _daemon = Killed(
        Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={git_port}"))
            .arg(format!("--base-path={}", srv.display()))
            .arg(&srv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(git_port);
    // A package index: a directory listing with one wheel, for pip's
    // --find-links.
    let index = env.root.join("index");
    std::fs::create_dir(&index).unwrap();
    let mk = Command::new("python3")
        .arg("-c")
        .arg(
            "import zipfile,sys\n\
             z=zipfile.ZipFile(sys.argv[1]+'/lexecontestpkg-0.1-py3-none-any.whl','w')\n\
             z.writestr('lexecontestpkg/__init__.py','')\n\
             z.writestr('lexecontestpkg-0.1.dist-info/METADATA','Metadata-Version: 2.1\\nName: lexecontestpkg\\nVersion: 0.1\\n')\n\
             z.writestr('lexecontestpkg-0.1.dist-info/WHEEL','Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
             z.writestr('lexecontestpkg-0.1.dist-info/RECORD','')\n",
        )
        .arg(&index)
        .output()
        .unwrap();
    assert!(mk.status.success(), "{}", stderr(&mk));
    let pip_port = free_port();
    let _index = Killed(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(pip_port.to_string())
            .current_dir(&index)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(pip_port);
    let (web_port, _) = http_server("127.0.0.1:0");

    let clone = |policy: Option<&Path>, dest: &str| -> bool {
        let url = format!("git://127.0.0.1:{git_port}/repo");
        let args = ["git", "clone", "-q", url.as_str(), dest];
        let o = match policy {
            Some(p) => env.supervise(p, &args),
            None => env.native(&args),
        };
        o.status.success() && env.ws.join(dest).join("README").exists()
    };
    let node_script = format!(
        "fetch('http://127.0.0.1:{web_port}/').then(r => r.text()).then(t => console.log(t.trim())).catch(e => console.log('refused'))"
    );
    let node = |policy: Option<&Path>| -> String {
        let args = ["node", "-e", node_script.as_str()];
        let o = match policy {
            Some(p) => env.supervise(p, &args),
            None => env.native(&args),
        };
        stdout(&o).trim().to_string()
    };
    let pip = |policy: Option<&Path>, dest: &str| -> bool {
        let find = format!("http://127.0.0.1:{pip_port}/");
        let args = [
            "python3",
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-cache-dir",
            "--retries",
            "0",
            "--timeout",
            "5",
            "--find-links",
            find.as_str(),
            "-d",
            dest,
            "lexecontestpkg",
        ];
        let mut c = match policy {
            Some(p) => env.supervise_cmd(p, &args),
            None => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]).current_dir(&env.ws);
                c
            }
        };
        let o = c.env_remove("PIP_FIND_LINKS").output().unwrap();
        o.status.success()
            && env
                .ws
                .join(dest)
                .join("lexecontestpkg-0.1-py3-none-any.whl")
                .exists()
    };
    assert!(clone(None, "native-clone"), "git clone fails natively");
    assert_eq!(node(None), "hello");
    assert!(pip(None, "native-pip"), "pip download fails natively");

    let allow = policy_with(
        &env,
        "block",
        &format!(
            "  - id: local-servers\n    connect: {{address: 127.0.0.1, port: [{git_port}, {web_port}, {pip_port}], protocol: tcp}}\n    decision: allow\n    reason: the test's servers\n"
        ),
    );
    let refuse = policy_with(
        &env,
        "allow",
        &format!(
            "  - id: no-local-servers\n    connect: {{address: 127.0.0.0/8, port: [{git_port}, {web_port}, {pip_port}]}}\n    decision: block\n    reason: not these servers\n"
        ),
    );
    assert!(clone(Some(&allow), "clone-allowed"));
    assert_eq!(node(Some(&allow)), "hello");
    assert!(pip(Some(&allow), "pip-allowed"));
    assert!(!clone(Some(&refuse), "clone-refused"));
    assert_eq!(node(Some(&refuse)), "refused");
    assert!(!pip(Some(&refuse), "pip-refused"));
    let refused: Vec<_> = connect_records(&env)
        .into_iter()
        .filter(|r| r["rule"] == "no-local-servers")
        .collect();
    let programs: BTreeSet<String> = refused
        .iter()
        .filter_map(|r| r["action"]["process"]["program"].as_str())
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .collect();
    assert!(
        programs.iter().any(|p| p.starts_with("git")),
        "{programs:?}"
    );
    assert!(
        programs.iter().any(|p| p.starts_with("node")),
        "{programs:?}"
    );
    assert!(
        programs.iter().any(|p| p.starts_with("python")),
        "{programs:?}"
    );
    env.assert_valid();
}

#[test]
fn observe_mode_records_a_forbidden_connection_and_lets_it_through() {
    let env = Env::new();
    let (port, hits) = http_server("127.0.0.1:0");
    let p = env.policy(&format!(
        "version: 1\nmode: observe\ndefaults: {{exec: allow, open: allow, connect: block}}\nrules: []\n# port {port}\n"
    ));
    let before = hits.load(Ordering::SeqCst);
    let o = env.supervise(&p, &["curl", "-s", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(stdout(&o), "hello\n", "{}", stderr(&o));
    assert!(
        stderr(&o).contains("would block connect 127.0.0.1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(hits.load(Ordering::SeqCst), before + 1);
    let r = connect_records(&env);
    assert_eq!(r[0]["verdict"], "block");
    assert_eq!(r[0]["outcome"], "allowed");
    assert_eq!(r[0]["mode"], "observe");
    env.assert_valid();
}

/// The C library's resolver: a UDP socket connected to the resolver, the A
/// and AAAA queries sent together with `sendmmsg` and no address.
const RESOLVER_C: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/time.h>
static int query(unsigned char *q, unsigned short id, const char *name, int type) {
    int n = 0;
    q[n++] = id >> 8; q[n++] = id & 0xff; q[n++] = 1; q[n++] = 0;
    q[n++] = 0; q[n++] = 1; memset(q + n, 0, 6); n += 6;
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        int l = dot ? (int)(dot - p) : (int)strlen(p);
        q[n++] = l; memcpy(q + n, p, l); n += l;
        p += l; if (*p == '.') p++;
    }
    q[n++] = 0; q[n++] = 0; q[n++] = type; q[n++] = 0; q[n++] = 1;
    return n;
}
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.3", &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { printf("connect %d\n", errno); return 0; }
    struct timeval tv = {3, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    unsigned char q1[300], q2[300];
    struct iovec iov[2] = {{q1, query(q1, 1, argv[2], 1)}, {q2, query(q2, 2, argv[2], 28)}};
    struct mmsghdr m[2];
    memset(m, 0, sizeof m);
    m[0].msg_hdr.msg_iov = &iov[0]; m[0].msg_hdr.msg_iovlen = 1;
    m[1].msg_hdr.msg_iov = &iov[1]; m[1].msg_hdr.msg_iovlen = 1;
    int n = sendmmsg(s, m, 2, MSG_NOSIGNAL);
    if (n < 0) { printf("refused %d\n", errno); return 0; }
    unsigned char r[512];
    int got = 0;
    for (int i = 0; i < n; i++) if (recv(s, r, sizeof r, 0) > 0) got++;
    printf("sent %d %u %u answers %d\n", n, m[0].msg_len, m[1].msg_len, got);
    return 0;
}
"#;

#[test]
fn the_c_library_resolver_pattern_is_judged_by_name_and_binds() {
    let env = Env::new();
    let (dns_port, asked) = dns_responder();
    let prog = env.cc("resolver", RESOLVER_C);
    let port = dns_port.to_string();
    let native = env.native(&[prog.to_str().unwrap(), &port, "mirror.example"]);
    let want_ok = "sent 2 32 32 answers 2\n";
    assert_eq!(stdout(&native), want_ok);
    asked.lock().unwrap().clear();
    let p = policy_with(
        &env,
        "escalate",
        "  - id: lo\n    connect: {address: 127.0.0.0/8}\n    decision: allow\n    reason: loopback\n  - id: mirror\n    connect: {host: mirror.example}\n    decision: allow\n    reason: the mirror\n  - id: no-exfil\n    connect: {host: '*.exfil.example'}\n    decision: block\n    reason: exfiltration\n",
    );
    let run = |name: &str| {
        env.supervise_cmd(&p, &[prog.to_str().unwrap(), &port, name])
            .env("LEXECON_DNS_UPSTREAM", format!("127.0.0.3:{dns_port}"))
            .output()
            .unwrap()
    };
    let o = run("mirror.example");
    assert_eq!(stdout(&o), want_ok, "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run("c2VjcmV0.exfil.example");
    assert_eq!(stdout(&o), "refused 1\n", "{}", stderr(&o));
    // A name no rule names gets the connect default (escalate; no approver
    // attached, so refused): data in a name does not leave through DNS.
    let o = run("c2VjcmV0.anywhere.example");
    assert_eq!(stdout(&o), "refused 1\n", "{}", stderr(&o));
    let seen = asked.lock().unwrap().clone();
    assert!(!seen.iter().any(|n| n.contains("exfil")), "{seen:?}");
    assert!(!seen.iter().any(|n| n.contains("c2VjcmV0")), "{seen:?}");
    // Both queries of the allowed name were judged and answered to the
    // supervisor too (the tree's two and the supervisor's two).
    assert_eq!(
        seen.iter().filter(|n| *n == "mirror.example").count(),
        4,
        "{seen:?}"
    );
    let dns: Vec<_> = env
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "dns")
        .collect();
    assert_eq!(dns.len(), 2);
    assert_eq!(dns[0]["bindings"][0]["name"], "mirror.example");
    env.assert_valid();
}

#[test]
fn binding_a_local_socket_is_judged_as_creating_its_name() {
    let env = Env::new();
    std::fs::create_dir(env.ws.join("protected")).unwrap();
    let script = r#"
import socket
for p in ['protected/s.sock', 'free.sock']:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(p); print(p, 'bound')
    except OSError as e:
        print(p, 'refused', e.errno)
"#;
    let p = policy_with(
        &env,
        "allow",
        &format!(
            "  - id: protect\n    open: {{path: '{}/protected/**', access: [write, create]}}\n    decision: block\n    reason: protected\n",
            env.ws.display()
        ),
    );
    let o = python(&env, Some(&p), script, &[]);
    assert_eq!(
        stdout(&o),
        "protected/s.sock refused 1\nfree.sock bound\n",
        "{}",
        stderr(&o)
    );
    assert!(!env.ws.join("protected/s.sock").exists());
    assert!(stderr(&o).contains("blocked bind"), "{}", stderr(&o));
    // The socket file gets the caller's umask, as natively.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(env.ws.join("free.sock"))
        .unwrap()
        .permissions()
        .mode();
    let native_dir = env.root.join("native");
    std::fs::create_dir(&native_dir).unwrap();
    let n = Command::new("python3")
        .args([
            "-c",
            "import socket; socket.socket(socket.AF_UNIX).bind('n.sock')",
        ])
        .current_dir(&native_dir)
        .output()
        .unwrap();
    assert!(n.status.success());
    let native_mode = std::fs::symlink_metadata(native_dir.join("n.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, native_mode & 0o7777);
    env.assert_valid();
}

/// As the connect race, with datagrams: a thread rewrites the destination
/// of `sendto` between an allowed and a forbidden port.
#[test]
fn sendto_address_race_never_reaches_a_forbidden_port() {
    let env = Env::new();
    let ok = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bad = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (ok_port, bad_port) = (
        ok.local_addr().unwrap().port(),
        bad.local_addr().unwrap().port(),
    );
    let count = |s: UdpSocket| {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = Arc::clone(&n);
        std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            while s.recv(&mut buf).is_ok() {
                n2.fetch_add(1, Ordering::SeqCst);
            }
        });
        n
    };
    let (_ok_hits, bad_hits) = (count(ok), count(bad));
    let prog = env.cc_with(
        "udprace",
        &format!(
            r#"
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
static struct sockaddr_in a;
static volatile int stop;
static void *flip(void *x) {{
    (void)x;
    volatile unsigned short *port = &a.sin_port;
    while (!stop) {{ *port = htons({bad_port}); *port = htons({ok_port}); }}
    return 0;
}}
int main(int argc, char **argv) {{
    int n = argc > 1 ? atoi(argv[1]) : 3000;
    a.sin_family = AF_INET; a.sin_port = htons({ok_port});
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    pthread_t t; pthread_create(&t, 0, flip, 0);
    int sent = 0;
    for (int i = 0; i < n; i++)
        if (sendto(s, "x", 1, 0, (struct sockaddr *)&a, sizeof a) == 1) sent++;
    stop = 1; pthread_join(t, 0);
    printf("%d\n", sent);
    return 0;
}}
"#
        ),
        &["-pthread"],
    );
    // Natively the flipping thread needs CPU time to win: many sends.
    assert!(env
        .native(&[prog.as_os_str(), std::ffi::OsStr::new("200000")])
        .status
        .success());
    std::thread::sleep(Duration::from_millis(300));
    let native_wins = bad_hits.load(Ordering::SeqCst);
    assert!(
        native_wins > 0,
        "the race never won natively: the test proves nothing"
    );
    let p = policy_with(
        &env,
        "block",
        &format!("  - id: ok\n    connect: {{address: 127.0.0.1, port: {ok_port}, protocol: udp}}\n    decision: allow\n    reason: the allowed port\n"),
    );
    let o = env
        .supervise_cmd_with(&p, &["--quiet"], &[&prog])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        bad_hits.load(Ordering::SeqCst),
        native_wins,
        "a rewritten destination reached the forbidden port ({} sent)",
        stdout(&o)
    );
    env.assert_valid();
}
