//! One error type for every AWS call, classified once: transient (retry) or permanent (report).

use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;
use thiserror::Error;

/// Error codes AWS uses for throttling and passing server trouble, across the services called here.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "PriorRequestNotComplete",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServerException",
    "RequestTimeout",
    "RequestTimeoutException",
    "EndpointTemporarilyUnavailableException",
];

/// A failed AWS call, with what is needed to decide on a retry and to explain it to an operator.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[error("{operation} failed{}: {}{}{}", attempts_text(*.attempts), code_text(.code), .message, gave_up_text(.gave_up))]
pub struct AwsFault {
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub http_status: Option<u16>,
    pub transient: bool,
    pub attempts: u32,
    pub gave_up: Option<String>,
    /// Attempts given up on without an answer (cut off, or the connection lost after sending):
    /// the service may still have applied them, or apply them later.
    #[serde(skip_serializing_if = "is_zero")]
    pub abandoned: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn attempts_text(n: u32) -> String {
    match n {
        0 | 1 => String::new(),
        n => format!(" after {n} attempts"),
    }
}

fn code_text(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!("{c}: ")).unwrap_or_default()
}

fn gave_up_text(g: &Option<String>) -> String {
    g.as_ref().map(|g| format!(" (gave up: {g})")).unwrap_or_default()
}

impl AwsFault {
    pub fn service(operation: &'static str, code: Option<String>, message: String, transient: bool) -> Self {
        Self {
            operation,
            code,
            message,
            http_status: None,
            transient,
            attempts: 1,
            gave_up: None,
            abandoned: 0,
        }
    }

    /// Whether this attempt ended without an answer, so the request may have reached the service
    /// and may be applied (now or later) although the caller gave up on it: a cut-off attempt, a
    /// timeout, a connection lost or an answer that could not be read. A connection that was never
    /// made (`ConnectTimeout`, or refused) sent nothing. When the cause cannot be told, the attempt
    /// counts as unanswered: that only costs a later look.
    pub fn unanswered(&self) -> bool {
        match self.code.as_deref() {
            Some("AttemptTimeout" | "Timeout" | "UnreadableResponse") => true,
            Some("ConnectionError") => !self.message.contains("Connection refused"),
            _ => false,
        }
    }

    /// Whether the service's Region did not answer at all — a connection refused, reset or never
    /// made, a timeout, a 5xx — as when the Region is dark. Every other failure (access denied,
    /// not found, throttling, a validation error) is an answer from a Region that is up.
    pub fn region_dark(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("AttemptTimeout" | "Timeout" | "ConnectTimeout" | "ConnectionError" | "UnreadableResponse")
        ) || self.http_status.is_some_and(|s| (500..=599).contains(&s))
    }

    pub fn timeout(operation: &'static str, after: Duration) -> Self {
        Self::service(
            operation,
            Some("AttemptTimeout".to_owned()),
            format!("no answer within {} ms", after.as_millis()),
            true,
        )
    }

    pub fn gave_up(mut self, attempts: u32, why: &str) -> Self {
        self.attempts = attempts;
        self.gave_up = Some(why.to_owned());
        self
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Classifies any SDK error. Connection failures, timeouts, unreadable responses, throttling
    /// and 5xx are transient; everything else (validation, not found, access denied) is not.
    pub fn from_sdk<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let detail = aws_smithy_types::error::display::DisplayErrorContext(err).to_string();
        match err {
            SdkError::ServiceError(ctx) => {
                let e = ctx.err();
                let status = ctx.raw().status().as_u16();
                let code = e.code().map(str::to_owned);
                let transient = code.as_deref().is_some_and(|c| TRANSIENT_CODES.contains(&c))
                    || status == 429
                    || (500..=599).contains(&status);
                Self {
                    operation,
                    message: e.message().map(str::to_owned).unwrap_or(detail),
                    code,
                    http_status: Some(status),
                    transient,
                    attempts: 1,
                    gave_up: None,
                    abandoned: 0,
                }
            }
            SdkError::DispatchFailure(d) => Self::service(
                operation,
                Some(
                    if d.is_timeout() {
                        "ConnectTimeout"
                    } else {
                        "ConnectionError"
                    }
                    .to_owned(),
                ),
                detail,
                !d.is_user(),
            ),
            SdkError::TimeoutError(_) => Self::service(operation, Some("Timeout".to_owned()), detail, true),
            SdkError::ResponseError(r) => {
                let status = r.raw().status().as_u16();
                let mut f = Self::service(operation, Some("UnreadableResponse".to_owned()), detail, true);
                f.http_status = Some(status);
                f
            }
            // Request construction failed: retrying the same request cannot help.
            _ => Self::service(operation, Some("RequestNotBuilt".to_owned()), detail, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_region_that_does_not_answer_at_all_is_dark() {
        let fault = |code: &str, status: Option<u16>| {
            let mut f = AwsFault::service("Test.Op", Some(code.to_owned()), "x".to_owned(), true);
            f.http_status = status;
            f
        };
        for dark in [
            fault("ConnectionError", None),
            fault("ConnectTimeout", None),
            fault("AttemptTimeout", None),
            fault("ServiceUnavailable", Some(503)),
            fault("InternalFailure", Some(500)),
        ] {
            assert!(dark.region_dark(), "{dark:?}");
        }
        for up in [
            fault("AccessDenied", Some(403)),
            fault("Throttling", Some(400)),
            fault("ResourceNotFound", Some(404)),
            AwsFault::service(
                "CloudWatch.DescribeAlarms",
                None,
                "alarm x does not exist".into(),
                false,
            ),
        ] {
            assert!(!up.region_dark(), "{up:?}");
        }
    }

    #[test]
    fn only_an_attempt_that_may_have_reached_the_service_counts_as_unanswered() {
        let fault = |code: &str, message: &str| {
            AwsFault::service("Test.Op", Some(code.to_owned()), message.to_owned(), true)
        };
        assert!(AwsFault::timeout("Test.Op", Duration::from_millis(500)).unanswered());
        assert!(fault("ConnectionError", "connection closed before message completed").unanswered());
        assert!(fault("UnreadableResponse", "truncated body").unanswered());
        assert!(
            !fault(
                "ConnectionError",
                "tcp connect error: Connection refused (os error 111)"
            )
            .unanswered()
        );
        assert!(!fault("ConnectTimeout", "connect timed out").unanswered());
        assert!(
            !fault("Throttling", "Rate exceeded").unanswered(),
            "an answer is an answer"
        );
    }

    #[test]
    fn the_message_names_the_operation_code_attempts_and_why_it_stopped() {
        let f = AwsFault::service(
            "Route53.ChangeResourceRecordSets",
            Some("Throttling".into()),
            "Rate exceeded".into(),
            true,
        )
        .gave_up(4, "the invocation deadline is near");
        assert_eq!(
            f.to_string(),
            "Route53.ChangeResourceRecordSets failed after 4 attempts: Throttling: Rate exceeded (gave up: the invocation deadline is near)"
        );
    }
}
