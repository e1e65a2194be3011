//! Adapters: one per AWS service. Each turns SDK calls into the plain observed types and
//! [`AwsFault`](crate::fault::AwsFault)s, under the caller's retry [`Budget`](crate::retry::Budget).
//! No decisions are made here.

pub mod arc;
pub mod cloudwatch;
pub mod elasticache;
pub mod route53;
pub mod sns;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// The shared SDK configuration for the functions: region and credentials from the Lambda
/// environment, endpoints overridable through `AWS_ENDPOINT_URL_<SERVICE>` (which is how the
/// tests and the lab point the functions at local stand-ins), SDK retries off because
/// [`crate::retry`] owns retries and knows the deadline, and a short connect timeout so a dead
/// endpoint is noticed in seconds.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .load()
        .await
}
