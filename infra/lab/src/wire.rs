//! What the emulators on AWS's query protocol share: form-encoded parameters, the calling Region
//! from the SigV4 credential scope, XML escaping, and ElastiCache's error shape.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::lambda::now_ms;

/// ElastiCache's XML namespace.
pub const NS: &str = "http://elasticache.amazonaws.com/doc/2015-02-02/";

/// XML-escapes text content.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The Region in a SigV4 `Authorization` header's credential scope.
pub fn signing_region(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    let scope: Vec<&str> = cred.split(['/', ',']).collect();
    scope.get(2).map(|s| (*s).to_owned())
}

/// An AWS error in the query protocol's shape.
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error>\
             <RequestId>lab-{}</RequestId></ErrorResponse>",
            self.code,
            esc(&self.message),
            now_ms()
        );
        (self.status, [("content-type", "text/xml")], body).into_response()
    }
}

pub fn params(body: &[u8]) -> HashMap<String, String> {
    body.split(|b| *b == b'&')
        .filter_map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            Some((decode(k), decode(v)))
        })
        .collect()
}

/// Percent-decoding of form values (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_region_is_read_from_the_credential_scope() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=lab/20261123/us-west-2/elasticache/aws4_request, SignedHeaders=host, Signature=x"
                .parse()
                .expect("header"),
        );
        assert_eq!(signing_region(&h).as_deref(), Some("us-west-2"));
    }

    #[test]
    fn form_values_are_percent_decoded() {
        let p = params(b"Action=DescribeEvents&SourceIdentifier=a%2Db+c&Bad=%zz");
        assert_eq!(p["SourceIdentifier"], "a-b c");
        assert_eq!(p["Bad"], "%zz");
    }
}
