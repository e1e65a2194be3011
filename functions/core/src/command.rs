//! The rules every manual command shares, whichever function takes it: a target Region must be
//! a member, a command that changes something must repeat the datastore id and give a reason,
//! and a command that forgot `dry_run` only reports.

use thiserror::Error;

use crate::config::DatastoreConfig;
use crate::ids::Region;

/// Manual commands default to a dry run: one that forgot the flag only reports.
pub(crate) fn default_true() -> bool {
    true
}

/// A manual command that cannot be run as given. Nothing is read or changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandRejected {
    #[error("target_region: {0}")]
    BadRegion(String),
    #[error("target_region {0} is not a member Region of the Global Datastore (members: {1})")]
    NotAMember(String, String),
    #[error(
        "a switch with dry_run=false or override_safety_rules needs \"confirm\": \"{expected}\" (the Global Datastore id){got}"
    )]
    ConfirmationRequired { expected: String, got: String },
    #[error("a switch with dry_run=false needs a non-empty \"reason\" for the audit record")]
    ReasonRequired,
    #[error("override_safety_rules: {0}")]
    BadOverride(String),
    #[error("force: {0}")]
    BadForce(String),
}

/// An operator's target Region, which must be a member of the datastore.
pub fn member_region(raw: &str, datastore: &DatastoreConfig) -> Result<Region, CommandRejected> {
    let target = Region::parse(raw).map_err(|e| CommandRejected::BadRegion(e.to_string()))?;
    if datastore.member_in(&target).is_none() {
        let members: Vec<&str> = datastore.members.iter().map(|m| m.region.as_str()).collect();
        return Err(CommandRejected::NotAMember(
            target.to_string(),
            members.join(", "),
        ));
    }
    Ok(target)
}

/// A command that changes something must repeat the datastore id in `confirm` and give a reason;
/// returns the trimmed reason.
pub fn confirmed(
    needed: bool,
    datastore: &DatastoreConfig,
    confirm: Option<&str>,
    reason: Option<&str>,
) -> Result<String, CommandRejected> {
    let reason = reason.map(str::trim).unwrap_or_default().to_owned();
    if needed {
        if confirm != Some(datastore.id.as_str()) {
            return Err(CommandRejected::ConfirmationRequired {
                expected: datastore.id.to_string(),
                got: confirm
                    .map(|c| format!(", got {:?}", c.chars().take(80).collect::<String>()))
                    .unwrap_or_default(),
            });
        }
        if reason.is_empty() {
            return Err(CommandRejected::ReasonRequired);
        }
    }
    Ok(reason)
}
