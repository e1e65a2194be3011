//! The fast suite: needs nothing but cargo. The pure decisions against every fixture, the
//! handlers against the lab's in-process Route 53 emulator and against smithy mocks (for the
//! errors the real thing cannot produce), and `template.yaml` against the code. One binary, so the
//! SDK tree is linked once for all of them.

mod arc_mocks;
mod dns_route53;
mod error_paths;
mod fixtures;
mod promoter;
mod template;
