//! What privilege the command would start with.
//!
//! The supervisor's guarantees assume an unprivileged tree. A tree running
//! as uid 0, or holding capabilities, can reach the signing key and the
//! ledger without opening them through the gate (a raw block device, a
//! kernel module), and its capabilities bypass the permission checks the
//! supervisor relies on. The command inherits the supervisor's credentials:
//! this module tells, before anything starts, whether they are privileged.

use std::io;

/// Privilege the command would have at its exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privilege {
    /// The real or effective uid is 0.
    pub root: bool,
    /// The capabilities it gets at its exec: the bounding set when it is
    /// root, else the ambient set (`no_new_privs` keeps file capabilities
    /// and set-id bits from adding any).
    pub caps: u64,
}

/// Capabilities that break the supervisor's assumptions most directly,
/// with their names (capability(7)).
const NOTABLE: &[(u32, &str)] = &[
    (1, "cap_dac_override"),
    (2, "cap_dac_read_search"),
    (3, "cap_fowner"),
    (16, "cap_sys_module"),
    (17, "cap_sys_rawio"),
    (19, "cap_sys_ptrace"),
    (21, "cap_sys_admin"),
];

impl Privilege {
    /// `as root (uid 0) with capabilities 0x… (cap_dac_override, …)`.
    pub fn describe(&self) -> String {
        let who = if self.root { "as root (uid 0)" } else { "" };
        if self.caps == 0 {
            return format!("{who} without capabilities");
        }
        let names: Vec<&str> = NOTABLE
            .iter()
            .filter(|(bit, _)| self.caps & (1u64 << bit) != 0)
            .map(|(_, n)| *n)
            .collect();
        let list = if names.is_empty() {
            String::new()
        } else {
            format!(" ({}, …)", names.join(", "))
        };
        let with = format!("with capabilities {:#x}{list}", self.caps);
        if who.is_empty() {
            with
        } else {
            format!("{who} {with}")
        }
    }
}

/// The privilege the command would start with, from the supervisor's own
/// credentials; `None` when it would be unprivileged.
pub fn of_command() -> io::Result<Option<Privilege>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    from_status(&status).ok_or_else(|| {
        io::Error::other("/proc/self/status has no readable Uid, CapBnd or CapAmb line")
    })
}

/// [`of_command`] from the text of a `/proc/PID/status`; `None` inside
/// when unprivileged, `None` outside when the text lacks a field.
fn from_status(status: &str) -> Option<Option<Privilege>> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let mut uids = field("Uid:")?.split_whitespace();
    let real: u32 = uids.next()?.parse().ok()?;
    let effective: u32 = uids.next()?.parse().ok()?;
    let bounding = u64::from_str_radix(field("CapBnd:")?, 16).ok()?;
    let ambient = u64::from_str_radix(field("CapAmb:")?, 16).ok()?;
    let root = real == 0 || effective == 0;
    let caps = if root { bounding } else { ambient };
    Some((root || caps != 0).then_some(Privilege { root, caps }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uid: &str, bnd: &str, amb: &str) -> String {
        format!(
            "Name:\tx\nUid:\t{uid}\nCapInh:\t0000000000000000\nCapBnd:\t{bnd}\nCapAmb:\t{amb}\n"
        )
    }

    #[test]
    fn root_or_capabilities_are_privilege() {
        let full = "000001ffffffffff";
        let none = "0000000000000000";
        assert_eq!(
            from_status(&status("1000\t1000\t1000\t1000", full, none)),
            Some(None)
        );
        let p = from_status(&status("0\t0\t0\t0", full, none))
            .unwrap()
            .unwrap();
        assert!(p.root);
        assert_eq!(p.caps, 0x1ff_ffff_ffff);
        assert!(p
            .describe()
            .contains("as root (uid 0) with capabilities 0x1ffffffffff"));
        assert!(p.describe().contains("cap_sys_module"));
        // Real uid 0 with another effective uid can take root back.
        assert!(
            from_status(&status("0\t1000\t1000\t1000", none, none))
                .unwrap()
                .unwrap()
                .root
        );
        let p = from_status(&status("0\t0\t0\t0", none, none))
            .unwrap()
            .unwrap();
        assert_eq!(p.describe(), "as root (uid 0) without capabilities");
        // Ambient capabilities survive the exec of an ordinary user.
        let p = from_status(&status("1000\t1000\t1000\t1000", full, "0000000000000002"))
            .unwrap()
            .unwrap();
        assert!(!p.root);
        assert_eq!(p.describe(), "with capabilities 0x2 (cap_dac_override, …)");
        assert_eq!(from_status("Name:\tx\n"), None);
    }

    #[test]
    fn the_own_process_is_read() {
        assert!(of_command().is_ok());
    }
}
