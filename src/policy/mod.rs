//! The policy language: YAML → compiled, deterministic matcher.
