//! One integration test binary (the SDK tree is linked once), made of modules.

mod arc_mocks;
mod dns_route53;
mod drill;
mod error_paths;
mod fixtures;
mod lab;
mod lab_arc;
mod lab_cli;
mod lab_cloudwatch;
mod lab_preflight;
mod lab_promoter;
mod lab_roundtrip;
mod promoter;
mod template;
