//! The lab suite: the real function binaries against a lab of each test's own (real Valkey from
//! `.venv`, emulated AWS APIs, all on loopback), the `lab` CLI, and the DR drills shortened.
//! `make test` installs and builds what it needs; run alone, a test that cannot start its lab
//! says in one line what to run.

mod drill;
mod lab;
mod lab_arc;
mod lab_cli;
mod lab_cloudwatch;
mod lab_preflight;
mod lab_promoter;
mod lab_roundtrip;
