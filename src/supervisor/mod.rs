//! The seccomp user-notify supervisor.
pub mod decode;
pub mod filter;
pub mod resolve;
pub mod sys;
