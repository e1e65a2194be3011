//! Lambda entry point: tracing, configuration (validated once), SDK clients (built once), run.

// No panics on handler paths (release builds abort on panic): enforced, not promised.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![warn(unreachable_pub)]

use failover_core::config::SwitchConfig;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;
use traffic_switch::TrafficSwitch;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Honours AWS_LAMBDA_LOG_FORMAT (JSON) and AWS_LAMBDA_LOG_LEVEL, falling back to RUST_LOG.
    lambda_runtime::tracing::init_default_subscriber();
    let cfg =
        SwitchConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = failover_core::aws::sdk_config().await;
    let switch = TrafficSwitch::new(cfg, &sdk);
    let switch = &switch;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| async move {
        // Boxed: the handler's future is deep, and a pointer keeps the runtime's future small.
        Box::pin(switch.lambda_handler(event)).await
    }))
    .await
}
