//! Shared core of the Global Datastore failover functions.
//!
//! - [`intake`]: every event shape, parsed into [`intake::Trigger`].
//! - [`switch`]: the traffic switch's pure decisions.
//! - [`observed`]: the plain view of AWS the decisions read.
//! - [`aws`]: one adapter per AWS service; [`fault`] and [`retry`]: how calls fail and retry.
//! - [`region_switch`]: the (undocumented) payload of an ARC Region switch custom-action step.
//! - [`audit`]: the audit record / EMF line every invocation leaves.
//! - [`preflight`]: the readiness check's judges (`{"command":"preflight"}`).
//! - [`config`] and [`ids`]: configuration and the identifiers it is made of.

// No panics on handler paths (release builds abort on panic): enforced outside the tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod audit;
pub mod aws;
pub mod command;
pub mod config;
pub mod fault;
pub mod ids;
pub mod intake;
pub mod observed;
pub mod preflight;
pub mod promote;
pub mod region_switch;
pub mod retry;
pub mod rotation;
pub mod switch;

#[cfg(test)]
mod props;
#[cfg(test)]
mod switch_tests;
