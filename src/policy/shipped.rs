//! The policies shipped with Lexecon, built into the binaries so that an
//! installed `lexecon` has them all: `--policy ci` (or `builtin:ci`) works
//! wherever the binary is.

/// (name, text) of every shipped policy.
pub const SHIPPED: &[(&str, &str)] = &[
    ("default", include_str!("../../policies/default.yaml")),
    ("ci", include_str!("../../policies/ci.yaml")),
    ("observe", include_str!("../../policies/observe.yaml")),
    ("demo", include_str!("../../policies/demo.yaml")),
];

/// The text of the shipped policy `name` (`ci` or `ci.yaml`).
pub fn shipped(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix(".yaml").unwrap_or(name);
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The names of the shipped policies, for messages.
pub fn names() -> String {
    SHIPPED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_policies_is_built_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_str().unwrap();
            assert_eq!(
                shipped(name),
                Some(std::fs::read_to_string(&p).unwrap().as_str()),
                "{name}"
            );
        }
        assert_eq!(shipped("ci.yaml"), shipped("ci"));
        assert!(shipped("nope").is_none());
    }
}
