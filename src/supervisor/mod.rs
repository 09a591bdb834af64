//! The seccomp user-notify supervisor.
pub mod filter;
pub mod sys;
