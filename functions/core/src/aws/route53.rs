//! Route 53: read the writer record and change it conditionally.
//!
//! The change is a compare-and-swap, not a blind UPSERT: when a record exists, the batch DELETEs
//! exactly the record that was read and CREATEs the new one (Route 53 applies a batch atomically
//! and rejects a DELETE that does not match). If another writer — this function in another
//! Region, acting on an older view — changed the record after we read it, our change fails with
//! [`ChangeError::Conflict`] instead of overwriting theirs, and the caller reads and decides again.

use aws_sdk_route53::Client;
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde::Serialize;
use thiserror::Error;

use crate::config::DnsTarget;
use crate::fault::AwsFault;
use crate::ids::DnsName;
use crate::observed::RecordView;
use crate::retry::{self, Budget, Done};

const LIST: &str = "Route53.ListResourceRecordSets";
const CHANGE: &str = "Route53.ChangeResourceRecordSets";
const GET_CHANGE: &str = "Route53.GetChange";

/// The record as read: the plain view for decisions, and the exact record set to DELETE.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub view: RecordView,
    pub raw: ResourceRecordSet,
}

/// A change Route 53 accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeReceipt {
    pub change_id: String,
    pub status: String,
}

#[derive(Debug, Clone, Error)]
pub enum ChangeError {
    /// The record is no longer what was read: someone else changed it.
    #[error("the record changed since it was read: {0}")]
    Conflict(AwsFault),
    #[error(transparent)]
    Fault(AwsFault),
}

#[derive(Debug, Clone)]
pub struct Route53 {
    client: Client,
}

fn normalise(v: &str) -> String {
    v.strip_suffix('.').unwrap_or(v).to_ascii_lowercase()
}

fn view_of(rrs: &ResourceRecordSet) -> RecordView {
    let has_routing_policy = rrs.set_identifier().is_some()
        || rrs.alias_target().is_some()
        || rrs.traffic_policy_instance_id().is_some();
    RecordView {
        record_type: rrs.r#type().as_str().to_owned(),
        value: rrs.resource_records().first().map(|r| normalise(r.value())),
        ttl: rrs.ttl(),
        has_routing_policy,
    }
}

/// Classifies a failed change; for `InvalidChangeBatch`, the message is every message Route 53
/// gave (it may answer with a list), joined with "; ".
fn change_fault(e: &SdkError<ChangeResourceRecordSetsError, HttpResponse>) -> AwsFault {
    let mut fault = AwsFault::from_sdk(CHANGE, e);
    if let Some(ChangeResourceRecordSetsError::InvalidChangeBatch(icb)) = e.as_service_error()
        && !icb.messages().is_empty()
    {
        fault.message = icb.messages().join("; ");
    }
    fault
}

/// The endings of Route 53's answers to a change that no longer matches the zone: the record
/// moved under us. Every other `InvalidChangeBatch` (a CNAME beside another type, a name outside
/// the zone, a malformed record) is a fault to report, not a reason to read again.
const MOVED: [&str; 3] = [
    "but it was not found",
    "but the values provided do not match the current values",
    "but it already exists",
];

/// Whether an `InvalidChangeBatch` message says exactly "the record moved under us": it holds at
/// least one `Tried to delete|create resource record set [...] but <MOVED>` clause and nothing
/// else but brackets, separators and whitespace. Route 53 wraps several messages as
/// `[first, second]` or answers them as a list (joined with "; " by [`change_fault`]).
pub fn record_moved(message: &str) -> bool {
    let mut rest = message;
    let mut clauses = 0;
    loop {
        let trimmed = rest
            .trim_start_matches(|c: char| c == '[' || c == ']' || c == ',' || c == ';' || c.is_whitespace());
        if trimmed.is_empty() {
            return clauses > 0;
        }
        let Some(after_verb) = trimmed
            .strip_prefix("Tried to delete resource record set ")
            .or_else(|| trimmed.strip_prefix("Tried to create resource record set "))
        else {
            return false;
        };
        // The record's description, `[name='…', type='…'…]`, then one of the endings.
        let Some(described) = after_verb.strip_prefix('[').and_then(|r| r.split_once("] ")) else {
            return false;
        };
        let Some(ending) = MOVED.iter().find(|m| described.1.starts_with(**m)) else {
            return false;
        };
        clauses += 1;
        rest = &described.1[ending.len()..];
    }
}

fn not_built(op: &'static str, e: impl std::fmt::Display) -> AwsFault {
    AwsFault::service(op, Some("RequestNotBuilt".to_owned()), e.to_string(), false)
}

impl Route53 {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Reads the record named `name`. A CNAME is preferred when several types share the name;
    /// otherwise the first record of another type is returned so the decision can refuse it.
    pub async fn read_record(
        &self,
        target: &DnsTarget,
        budget: &Budget,
    ) -> Result<Done<Option<ReadRecord>>, AwsFault> {
        let (zone, name) = (&target.hosted_zone, &target.record_name);
        let fqdn = name.fqdn();
        retry::run(LIST, budget, || async {
            let out = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(zone.as_str())
                .start_record_name(&fqdn)
                .max_items(10)
                .send()
                .await
                .map_err(|e| AwsFault::from_sdk(LIST, &e))?;
            let same_name: Vec<&ResourceRecordSet> = out
                .resource_record_sets()
                .iter()
                .filter(|r| normalise(r.name()) == name.as_str())
                .collect();
            let chosen = same_name
                .iter()
                .find(|r| r.r#type() == &RrType::Cname)
                .or_else(|| same_name.first())
                .map(|r| ReadRecord {
                    view: view_of(r),
                    raw: (*r).clone(),
                });
            Ok(chosen)
        })
        .await
    }

    /// Replaces `current` (or creates the record when `current` is `None`) with a CNAME to `to`,
    /// with the target's TTL.
    pub async fn swap_cname(
        &self,
        target: &DnsTarget,
        current: Option<&ResourceRecordSet>,
        to: &DnsName,
        comment: &str,
        budget: &Budget,
    ) -> Result<Done<ChangeReceipt>, ChangeError> {
        let (zone, name, ttl) = (&target.hosted_zone, &target.record_name, target.ttl);
        let new = ResourceRecordSet::builder()
            .name(name.fqdn())
            .r#type(RrType::Cname)
            .ttl(ttl)
            .resource_records(
                ResourceRecord::builder()
                    .value(to.as_str())
                    .build()
                    .map_err(|e| ChangeError::Fault(not_built(CHANGE, e)))?,
            )
            .build()
            .map_err(|e| ChangeError::Fault(not_built(CHANGE, e)))?;
        let mut changes = Vec::with_capacity(2);
        if let Some(old) = current {
            changes.push(
                Change::builder()
                    .action(ChangeAction::Delete)
                    .resource_record_set(old.clone())
                    .build(),
            );
        }
        changes.push(
            Change::builder()
                .action(ChangeAction::Create)
                .resource_record_set(new)
                .build(),
        );
        let changes: Vec<Change> = changes
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| ChangeError::Fault(not_built(CHANGE, e)))?;
        let comment: String = comment.chars().take(256).collect();
        let batch = ChangeBatch::builder()
            .comment(comment)
            .set_changes(Some(changes))
            .build()
            .map_err(|e| ChangeError::Fault(not_built(CHANGE, e)))?;

        let result = retry::run(CHANGE, budget, || async {
            let out = self
                .client
                .change_resource_record_sets()
                .hosted_zone_id(zone.as_str())
                .change_batch(batch.clone())
                .send()
                .await
                .map_err(|e| change_fault(&e))?;
            let info = out.change_info().ok_or_else(|| {
                AwsFault::service(CHANGE, None, "the answer has no ChangeInfo".to_owned(), false)
            })?;
            Ok(ChangeReceipt {
                change_id: info.id().trim_start_matches("/change/").to_owned(),
                status: info.status().as_str().to_owned(),
            })
        })
        .await;
        result.map_err(|f| {
            if f.is_code("InvalidChangeBatch") && record_moved(&f.message) {
                ChangeError::Conflict(f)
            } else {
                ChangeError::Fault(f)
            }
        })
    }

    /// Polls `GetChange` until the change is `INSYNC` or the budget's deadline is near; returns
    /// the last status seen.
    pub async fn wait_insync(
        &self,
        change_id: &str,
        poll: std::time::Duration,
        budget: &Budget,
    ) -> Result<Done<String>, AwsFault> {
        let mut polls = 0;
        loop {
            let done = retry::run(GET_CHANGE, budget, || async {
                let out = self
                    .client
                    .get_change()
                    .id(change_id)
                    .send()
                    .await
                    .map_err(|e| AwsFault::from_sdk(GET_CHANGE, &e))?;
                Ok(out
                    .change_info()
                    .map(|i| i.status().clone())
                    .unwrap_or(ChangeStatus::Pending))
            })
            .await?;
            polls += done.attempts;
            if done.value == ChangeStatus::Insync
                || budget.deadline.remaining() <= poll + budget.policy.attempt_timeout
            {
                return Ok(Done {
                    value: done.value.as_str().to_owned(),
                    attempts: polls,
                    abandoned: 0,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::record_moved;

    const NAME: &str = "[name='writer.sessions.internal.', type='CNAME']";

    #[test]
    fn each_of_route_53s_record_moved_answers_is_a_conflict_alone_or_together() {
        for ending in super::MOVED {
            let delete = format!("Tried to delete resource record set {NAME} {ending}");
            assert!(record_moved(&delete), "{delete}");
            assert!(record_moved(&format!("[{delete}]")), "bracketed: {delete}");
        }
        let both = format!(
            "[Tried to delete resource record set {NAME} but the values provided do not match the current values, \
             Tried to create resource record set {NAME} but it already exists]"
        );
        assert!(record_moved(&both));
        let listed = format!(
            "Tried to delete resource record set {NAME} but it was not found; \
             Tried to create resource record set {NAME} but it already exists"
        );
        assert!(record_moved(&listed));
    }

    #[test]
    fn other_invalid_change_batches_are_faults_not_conflicts() {
        for message in [
            "RRSet of type CNAME with DNS name writer.sessions.internal. is not permitted as it conflicts with other records with the same DNS name in zone sessions.internal.",
            "RRSet with DNS name writer.other. is not permitted in zone sessions.internal.",
            "",
            "[]",
            // A known clause followed by text that is not one of Route 53's: not exactly a conflict.
            "[Tried to delete resource record set [name='w.', type='CNAME'] but the values provided do not match the current values, or it was not found]",
            "Tried to delete resource record set [name='w.', type='CNAME'] but something else happened",
        ] {
            assert!(!record_moved(message), "{message}");
        }
    }
}
