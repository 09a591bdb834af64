//! The seccomp user-notify supervisor.
