//! Lambda entry point: tracing, configuration (validated once), SDK clients (built once), run.

// No panics on handler paths (release builds abort on panic): enforced, not promised.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![warn(unreachable_pub)]

use failover_core::config::PromoterConfig;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use promoter::Promoter;
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let cfg =
        PromoterConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = failover_core::aws::sdk_config().await;
    let promoter = Promoter::new(cfg, &sdk);
    let promoter = &promoter;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| async move {
        Box::pin(promoter.lambda_handler(event)).await
    }))
    .await
}
