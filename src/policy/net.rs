//! Conditions of `connect:` rules (connections, datagrams, binds, listens
//! and DNS queries) and their evaluation.
//!
//! - `host`: globs on host names (lowercase; `*` matches any run of
//!   characters, dots included). For an address, it holds when one of the
//!   names the supervisor saw resolve to the address in this run matches;
//!   an address no name was seen for has no name, and matches no `host`
//!   condition (block, escalate or allow alike): such destinations are
//!   judged by `address` rules and the default. For a DNS query, the name
//!   asked for.
//! - `address`: addresses and CIDR blocks, IPv4 and IPv6 (an IPv4-mapped
//!   IPv6 destination is judged as its IPv4 address).
//! - `port`: ports and ranges (`443`, `8000-8999`).
//! - `protocol`: `tcp`, `udp`, `unix`, `other`.
//! - `path`: globs on the path of a local socket (resolved, absolute); an
//!   abstract name is matched as `@` followed by the name.
//! - `op`: `connect`, `send`, `bind`, `listen`, `resolve`. Without it a
//!   rule judges `connect` and `send`, and `resolve` when it has a `host`
//!   condition; `bind` and `listen` only when listed.
//! - `process`: the calling process's program, as for open rules.
//!
//! A DNS query (`resolve`) is judged by `host` (and `process`) alone: the
//! address, port and protocol conditions of an allow rule do not apply to
//! it; a block or escalate rule with such conditions forbids only some
//! connections to the host and does not judge its resolution; a rule
//! without `host` does not judge it.

use std::net::IpAddr;

use super::glob::Globs;
use super::rule::ProcessConds;
use crate::action::{Action, ConnectAction, NetOp, NetTarget, Protocol, Verdict};

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim_matches(|c| c == '[' || c == ']').parse().ok()?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.bits))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.bits))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; others unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectConds {
    pub host: Option<Globs>,
    pub address: Option<Vec<Cidr>>,
    pub port: Option<Vec<(u16, u16)>>,
    pub protocol: Option<Vec<Protocol>>,
    pub path: Option<Globs>,
    pub op: Option<Vec<NetOp>>,
    pub process: Option<ProcessConds>,
}

impl ConnectConds {
    /// Whether the rule judges actions of `op` at all.
    pub fn judges(&self, op: NetOp) -> bool {
        match &self.op {
            Some(ops) => ops.contains(&op),
            None => match op {
                NetOp::Connect | NetOp::Send => true,
                NetOp::Resolve => self.host.is_some(),
                NetOp::Bind | NetOp::Listen => false,
            },
        }
    }
}

/// The destination as text, for explanations and glob matching of paths.
pub fn target_text(t: &NetTarget) -> String {
    match t {
        NetTarget::Ip { addr, port, .. } => match addr {
            IpAddr::V6(a) => format!("[{a}]:{port}"),
            IpAddr::V4(a) => format!("{a}:{port}"),
        },
        NetTarget::UnixPath(p) => p.to_string_lossy().into_owned(),
        NetTarget::UnixAbstract(n) => format!("@{}", String::from_utf8_lossy(n)),
        NetTarget::UnixUnnamed => "(unnamed local socket)".into(),
        NetTarget::Name(n) => n.clone(),
    }
}

/// One condition's result: (key, holds, detail).
pub(crate) type Check = (&'static str, bool, String);

/// Evaluates every condition but `process` (shared with open rules, done
/// by the caller); pushes one [`Check`] per condition.
pub(crate) fn eval(c: &ConnectConds, a: &ConnectAction, strict: bool, out: &mut Vec<Check>) {
    // A block or escalate rule that forbids only some connections to a host
    // (some ports, protocols or addresses) does not forbid resolving it.
    let narrowed = c.address.is_some() || c.port.is_some() || c.protocol.is_some();
    let judges = c.judges(a.op) && !(a.op == NetOp::Resolve && strict && narrowed);
    out.push((
        "op",
        judges,
        format!(
            "the action is a {} ({})",
            a.op.as_str(),
            if judges {
                "judged by this rule"
            } else {
                "not judged by this rule"
            }
        ),
    ));
    if !judges {
        return;
    }
    let resolve = a.op == NetOp::Resolve;
    if let Some(g) = &c.host {
        let (holds, detail) = match &a.target {
            NetTarget::Name(n) => match g.first_match(n) {
                Some(p) => (true, format!("name '{n}' matches '{p}'")),
                None => (
                    false,
                    format!("name '{n}' matches none of {}", g.describe()),
                ),
            },
            NetTarget::Ip { .. } if a.names.is_empty() => (
                false,
                format!(
                    "no name was seen resolving to {} in this run",
                    target_text(&a.target)
                ),
            ),
            NetTarget::Ip { .. } => {
                match a
                    .names
                    .iter()
                    .find_map(|n| g.first_match(n).map(|p| (n, p)))
                {
                    Some((n, p)) => (true, format!("'{n}', which resolved to it, matches '{p}'")),
                    None => (
                        false,
                        format!(
                            "none of the names that resolved to it ({}) matches {}",
                            a.names.join(", "),
                            g.describe()
                        ),
                    ),
                }
            }
            _ => (false, "a local socket has no host name".into()),
        };
        out.push(("host", holds, detail));
    }
    if resolve {
        return;
    }
    if let Some(blocks) = &c.address {
        let (holds, detail) = match &a.target {
            NetTarget::Ip { addr, .. } => match blocks.iter().find(|b| b.contains(*addr)) {
                Some(b) => (true, format!("{addr} is in {}/{}", b.addr, b.bits)),
                None => (false, format!("{addr} is in none of the listed addresses")),
            },
            _ => (false, "the destination is not an IP address".into()),
        };
        out.push(("address", holds, detail));
    }
    if let Some(ranges) = &c.port {
        let (holds, detail) = match &a.target {
            NetTarget::Ip { port, .. } => {
                let hit = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(port));
                (
                    hit,
                    format!("port {port} is {}listed", if hit { "" } else { "not " }),
                )
            }
            _ => (false, "the destination has no port".into()),
        };
        out.push(("port", holds, detail));
    }
    if let Some(ps) = &c.protocol {
        let hit = ps.contains(&a.protocol);
        out.push((
            "protocol",
            hit,
            format!(
                "protocol {} is {}listed",
                a.protocol.as_str(),
                if hit { "" } else { "not " }
            ),
        ));
    }
    if let Some(g) = &c.path {
        let (holds, detail) = match &a.target {
            NetTarget::UnixPath(_) | NetTarget::UnixAbstract(_) => {
                let t = target_text(&a.target);
                match g.first_match(&t) {
                    Some(p) => (true, format!("socket '{t}' matches '{p}'")),
                    None => (
                        false,
                        format!("socket '{t}' matches none of {}", g.describe()),
                    ),
                }
            }
            _ => (false, "the destination is not a named local socket".into()),
        };
        out.push(("path", holds, detail));
    }
}

/// The reason of a DNS query's default decision (the `connect` default):
/// says why the query itself is judged. A query carries its name to
/// whoever serves the domain, so a name no rule allows is not resolved
/// without the question being asked (`escalate`) or at all (`block`): DNS
/// is an exfiltration channel too.
pub(crate) fn explain_default(
    action: &Action,
    configured: Verdict,
    d: &mut crate::action::Decision,
) {
    let resolve = matches!(action, Action::Connect(c) if c.op == NetOp::Resolve);
    if d.rule.is_none() && resolve && configured != Verdict::Allow {
        d.reason = format!(
            "no rule matched; a DNS query for a name no rule allows gets the default for connect ({configured}): the query itself carries the name out"
        );
    }
}

/// Parses `443` or `8000-8999`.
pub(crate) fn parse_ports(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let p = s.trim().parse().ok()?;
            (p, p)
        }
    };
    (lo <= hi).then_some((lo, hi))
}

/// The address standing for "an address `HOST` resolved to" in examples,
/// tests and `policy explain` (TEST-NET-1, never routed).
pub const EXAMPLE_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 1);

/// An action written as text, for examples, tests and `policy explain`:
/// `HOST:PORT` (a connection to an address HOST resolved to),
/// `ADDR:PORT`, `[V6]:PORT`, `/path/of/socket`, `@abstract`; with
/// `op: resolve`, a bare host name.
pub fn parse_action(
    s: &str,
    op: NetOp,
    protocol: Option<Protocol>,
    names: Vec<String>,
) -> Result<ConnectAction, String> {
    use crate::action::NetFamily;
    let s = s.trim();
    let unix = |t| (t, Protocol::Unix);
    let (target, default_protocol, mut names) = if op == NetOp::Resolve {
        (
            NetTarget::Name(s.trim_end_matches('.').to_ascii_lowercase()),
            Protocol::Udp,
            names,
        )
    } else if s.starts_with('/') {
        let (t, p) = unix(NetTarget::UnixPath(s.into()));
        (t, p, names)
    } else if let Some(n) = s.strip_prefix('@') {
        let (t, p) = unix(NetTarget::UnixAbstract(n.as_bytes().to_vec()));
        (t, p, names)
    } else {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| format!("'{s}': write [ADDRESS]:PORT"))?;
            (h, p)
        } else {
            s.rsplit_once(':')
                .ok_or_else(|| format!("'{s}' has no port: write HOST:PORT"))?
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("'{port}' is not a port number"))?;
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let family = if ip.is_ipv4() {
                    NetFamily::Inet
                } else {
                    NetFamily::Inet6
                };
                (
                    NetTarget::Ip {
                        family,
                        addr: canonical(ip),
                        port,
                    },
                    Protocol::Tcp,
                    names,
                )
            }
            Err(_) => {
                if host.is_empty() || host.contains(['/', ' ']) {
                    return Err(format!("'{host}' is neither an address nor a host name"));
                }
                let mut n = names;
                n.push(host.trim_end_matches('.').to_ascii_lowercase());
                (
                    NetTarget::Ip {
                        family: NetFamily::Inet,
                        addr: IpAddr::V4(EXAMPLE_ADDRESS),
                        port,
                    },
                    Protocol::Tcp,
                    n,
                )
            }
        }
    };
    names.sort();
    names.dedup();
    Ok(ConnectAction {
        op,
        protocol: protocol.unwrap_or(default_protocol),
        target,
        names,
        process: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_v4_v6_and_mapped() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let l = Cidr::parse("::1").unwrap();
        assert!(l.contains("::1".parse().unwrap()));
        assert!(!l.contains("::2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
        let m = Cidr::parse("::ffff:127.0.0.0/104");
        // Mapped blocks are written as IPv4 blocks; a mapped literal is
        // taken as its IPv4 address.
        assert!(m.is_none() || m.unwrap().addr.is_ipv4());
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("example.com").is_none());
    }

    #[test]
    fn ports() {
        assert_eq!(parse_ports("443"), Some((443, 443)));
        assert_eq!(parse_ports("8000-8999"), Some((8000, 8999)));
        assert_eq!(parse_ports("9-1"), None);
        assert_eq!(parse_ports("x"), None);
    }
}
