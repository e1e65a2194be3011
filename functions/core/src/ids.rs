//! Newtypes for the identifiers this product handles. Each is parsed once — from configuration or
//! from an event — and is valid from then on ("parse, don't validate").

use std::fmt;

use serde::Serialize;
use thiserror::Error;

/// Why a string is not a valid identifier of the named kind.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} {value:?} is not valid: {why}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn invalid(kind: &'static str, value: &str, why: &'static str) -> InvalidId {
    InvalidId {
        kind,
        // Bounded so a huge bogus value cannot blow up an error message or a log line.
        value: value.chars().take(80).collect(),
        why,
    }
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// An AWS Region code such as `us-west-2` (never a display name like "US West (Oregon)").
    Region
);
string_newtype!(
    /// An ElastiCache replication group id, lower-cased as ElastiCache stores it.
    ReplicationGroupId
);
string_newtype!(
    /// A Global Datastore id as AWS reports it, prefix included (e.g. `ldgnf-sessions`).
    GlobalDatastoreId
);
string_newtype!(
    /// A Route 53 hosted zone id without the `/hostedzone/` prefix.
    HostedZoneId
);
string_newtype!(
    /// A DNS name, lower-case, without the trailing dot.
    DnsName
);

impl Region {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "Region";
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() < 3 {
            return Err(invalid(KIND, s, "expected a code like us-west-2"));
        }
        let (first, rest) = parts.split_at(1);
        let (middle, last) = rest.split_at(rest.len() - 1);
        let is_lower = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
        let prefix_ok = first.iter().all(|p| p.len() == 2 && is_lower(p));
        let middle_ok = middle.iter().all(is_lower);
        let last_ok = last
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()));
        if prefix_ok && middle_ok && last_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(KIND, s, "expected a code like us-west-2"))
        }
    }

    /// The Region named in an ARN (`arn:aws:cloudwatch:us-west-2:123456789012:alarm:x`).
    pub fn from_arn(arn: &str) -> Result<Self, InvalidId> {
        let mut parts = arn.splitn(6, ':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("arn"), Some(_partition), Some(_service), Some(region)) => Self::parse(region),
            _ => Err(invalid(
                "ARN",
                arn,
                "expected arn:<partition>:<service>:<region>:...",
            )),
        }
    }
}

impl ReplicationGroupId {
    /// ElastiCache's rules: 1–40 letters, digits and hyphens, starting with a letter, no two
    /// consecutive hyphens, not ending with a hyphen. Stored lower-case, as ElastiCache does.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "replication group id";
        let lower = s.to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 40 {
            return Err(invalid(KIND, s, "must be 1 to 40 characters"));
        }
        if !lower.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid(KIND, s, "must start with a letter"));
        }
        if !lower
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(KIND, s, "may hold only letters, digits and hyphens"));
        }
        if lower.contains("--") || lower.ends_with('-') {
            return Err(invalid(KIND, s, "may not hold '--' or end with '-'"));
        }
        Ok(Self(lower))
    }
}

impl GlobalDatastoreId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "Global Datastore id";
        if s.is_empty() || s.len() > 255 {
            return Err(invalid(KIND, s, "must be 1 to 255 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(KIND, s, "may hold only letters, digits and hyphens"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl HostedZoneId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "hosted zone id";
        let bare = s.strip_prefix("/hostedzone/").unwrap_or(s);
        if bare.is_empty() || bare.len() > 32 {
            return Err(invalid(KIND, s, "must be 1 to 32 characters"));
        }
        if !bare.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(invalid(KIND, s, "may hold only upper-case letters and digits"));
        }
        Ok(Self(bare.to_owned()))
    }
}

impl DnsName {
    /// Lower-cases and drops one trailing dot, so `Writer.Example.internal.` and
    /// `writer.example.internal` compare equal, as DNS does.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "DNS name";
        let trimmed = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if trimmed.is_empty() || trimmed.len() > 253 {
            return Err(invalid(KIND, s, "must be 1 to 253 characters"));
        }
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid(KIND, s, "each label must be 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(invalid(KIND, s, "may hold only letters, digits, '-' and '_'"));
            }
        }
        Ok(Self(trimmed))
    }

    /// The fully qualified form Route 53 returns (`name.` with the trailing dot).
    pub fn fqdn(&self) -> String {
        format!("{}.", self.0)
    }
}

/// The topic ARN of this stack in `region`: the stack (and so its topic name) is the same in every
/// Region, so only the Region field differs.
pub fn topic_in(own_topic: &str, region: &str) -> Option<String> {
    let parts: Vec<&str> = own_topic.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "sns", _, account, name] => {
            Some(["arn", partition, "sns", region, account, name].join(":"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_codes_parse_and_display_names_do_not() {
        for ok in [
            "us-west-2",
            "ap-southeast-1",
            "us-gov-west-1",
            "eu-central-2",
            "il-central-1",
        ] {
            assert_eq!(Region::parse(ok).map(|r| r.to_string()), Ok(ok.to_owned()));
        }
        for bad in [
            "",
            "US West (Oregon)",
            "us-west",
            "uswest2",
            "us-west-",
            "US-WEST-2",
            "us--2",
        ] {
            assert!(Region::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn region_is_taken_from_an_arn() {
        let r = Region::from_arn("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:primary-down");
        assert_eq!(r.map(|r| r.to_string()), Ok("eu-west-1".to_owned()));
        assert!(Region::from_arn("arn:aws:cloudwatch:REGION:1:alarm:x").is_err());
        assert!(Region::from_arn("not-an-arn").is_err());
    }

    #[test]
    fn replication_group_ids_follow_elasticache_rules_and_are_lower_cased() {
        assert_eq!(
            ReplicationGroupId::parse("Sessions-USW2").map(|g| g.to_string()),
            Ok("sessions-usw2".into())
        );
        for bad in ["", "1abc", "a--b", "abc-", "a_b", &"a".repeat(41)] {
            assert!(
                ReplicationGroupId::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn hosted_zone_ids_lose_their_prefix() {
        assert_eq!(
            HostedZoneId::parse("/hostedzone/Z0ABC123").map(|z| z.to_string()),
            Ok("Z0ABC123".into())
        );
        assert!(HostedZoneId::parse("z0abc").is_err());
        assert!(HostedZoneId::parse("").is_err());
    }

    #[test]
    fn dns_names_compare_without_case_or_trailing_dot() {
        let a = DnsName::parse("Writer.Sessions.Internal.");
        let b = DnsName::parse("writer.sessions.internal");
        assert_eq!(a, b);
        assert_eq!(b.map(|n| n.fqdn()), Ok("writer.sessions.internal.".into()));
        for bad in [
            "",
            ".",
            "a..b",
            "bad name.internal",
            &format!("{}.x", "a".repeat(64)),
        ] {
            assert!(DnsName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
