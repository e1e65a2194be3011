//! A Global Datastore failover as the lab performs it: validated like AWS, `modifying` for the
//! configured promotion time, then the data-plane roles really move (`REPLICAOF NO ONE` on the
//! promoted member, the others re-pointed through the link when reachable) and the promotion is
//! published to the new primary Region's SNS subscribers.
//!
//! When the old primary still answers, the move is coordinated the way Valkey's own `FAILOVER`
//! is: writes on the old primary are paused until the promoted member holds everything it
//! acknowledged, so a planned failover loses nothing; paused writers then find a replica
//! (`READONLY`). When it does not answer (a dark Region, a hung node), the promoted member takes
//! over with what had replicated. AWS does not document whether its failover drains the old
//! primary: this is the lab's model, and the README says so.

use std::sync::Arc;
use std::time::Duration;

use crate::wire::ApiError;
use crate::{LabState, valkey};

/// Validates and starts a failover; returns once the datastore is `modifying`.
pub fn start(lab: &Arc<LabState>, id: &str, region: &str, group: &str) -> Result<(), ApiError> {
    if id != lab.cfg.datastore_id {
        return Err(ApiError::new(
            404,
            "GlobalReplicationGroupNotFoundFault",
            format!("GlobalReplicationGroup {id} not found"),
        ));
    }
    let Some(target) = lab.regions.iter().position(|r| r.group == group) else {
        return Err(ApiError::new(
            400,
            "InvalidParameterValue",
            format!("{group} is not a member of {id}"),
        ));
    };
    if lab.regions[target].name != region {
        return Err(ApiError::new(
            400,
            "InvalidParameterValue",
            format!("{group} is in {}, not {region}", lab.regions[target].name),
        ));
    }
    {
        let g = lab.gds();
        if g.status != "available" {
            return Err(ApiError::new(
                400,
                "InvalidGlobalReplicationGroupState",
                format!("Global Datastore {id} is {}, not available", g.status),
            ));
        }
        if g.primary == target {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                format!("{group} is already the primary of {id}"),
            ));
        }
    }
    // Checked and changed under one lock: two failovers racing each other, one wins.
    let mut started = false;
    lab.set_gds(|g| {
        if g.status == "available" && g.primary != target {
            g.status = "modifying".into();
            started = true;
        }
    });
    if !started {
        return Err(ApiError::new(
            400,
            "InvalidGlobalReplicationGroupState",
            format!("Global Datastore {id} is not available"),
        ));
    }
    lab.event(region, group, "Failover to this replication group has started");
    let lab = Arc::clone(lab);
    tokio::spawn(async move { complete(lab, target).await });
    Ok(())
}

/// How long a healthy node has to answer the pause, and the promoted member to catch up.
const DRAIN_ANSWER: Duration = Duration::from_millis(300);
const DRAIN_CATCH_UP: Duration = Duration::from_secs(2);

fn offset(info: &[(String, String)]) -> Option<u64> {
    info.iter()
        .find(|(k, _)| k == "master_repl_offset")
        .and_then(|(_, v)| v.parse().ok())
}

/// Pauses writes on the old primary and waits until `new` has replicated everything it holds.
/// True when the pause took (it must then be lifted); the event log says whether it caught up.
async fn drain(lab: &LabState, old: usize, new: usize) -> bool {
    let (o, n) = (&lab.regions[old], &lab.regions[new]);
    if lab.region_dark(&o.name) {
        return false;
    }
    let pause_ms = (DRAIN_CATCH_UP + Duration::from_secs(3)).as_millis().to_string();
    if valkey::command_within(
        o.valkey_port,
        &["CLIENT", "PAUSE", &pause_ms, "WRITE"],
        DRAIN_ANSWER,
    )
    .await
    .is_err()
    {
        return false;
    }
    let Some(wanted) = valkey::replication_info(o.valkey_port)
        .await
        .ok()
        .and_then(|i| offset(&i))
    else {
        return true;
    };
    let until = tokio::time::Instant::now() + DRAIN_CATCH_UP;
    loop {
        let held = valkey::replication_info(n.valkey_port)
            .await
            .ok()
            .and_then(|i| offset(&i));
        if held.is_some_and(|h| h >= wanted) {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            lab.event(
                &n.name,
                &n.group,
                "Failover proceeded before this replication group caught up with the old primary",
            );
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn complete(lab: Arc<LabState>, target: usize) {
    tokio::time::sleep(lab.cfg.promotion_time).await;
    let old = lab.gds().primary;
    let paused = drain(&lab, old, target).await;
    let new = &lab.regions[target];
    if let Err(e) = valkey::command(new.valkey_port, &["REPLICAOF", "NO", "ONE"]).await {
        tracing::error!(error = %e, "promotion failed: the target did not take REPLICAOF NO ONE");
        lab.event(&new.name, &new.group, &format!("Failover failed: {e}"));
        if paused {
            let _ = valkey::command(lab.regions[old].valkey_port, &["CLIENT", "UNPAUSE"]).await;
        }
        lab.set_gds(|g| g.status = "available".into());
        return;
    }
    // Everyone else follows the new primary through the link. A member that does not answer
    // (its Region is dark) is re-pointed when it comes back: see `LabState::start_valkey`.
    let link_port = new.link_port.to_string();
    for (i, r) in lab.regions.iter().enumerate() {
        if i != target
            && let Err(e) = valkey::command(r.valkey_port, &["REPLICAOF", "127.0.0.1", &link_port]).await
        {
            tracing::warn!(region = %r.name, error = %e, "could not re-point a former member; will on restart");
        }
    }
    if paused {
        // The old primary is a replica now: the writes it held back fail with READONLY.
        let _ = valkey::command(lab.regions[old].valkey_port, &["CLIENT", "UNPAUSE"]).await;
    }
    lab.set_gds(|g| {
        g.primary = target;
        g.status = "available".into();
        g.failovers += 1;
    });
    lab.event(&new.name, &new.group, "Replication group promoted as primary");
    // ElastiCache reports the failover on the other members too, in their own Regions.
    for (i, r) in lab.regions.iter().enumerate() {
        if i != target {
            lab.event(
                &r.name,
                &r.group,
                "Failover completed: this replication group is now a secondary",
            );
        }
    }
    let message =
        serde_json::json!({ "ElastiCache:ReplicationGroupPromotedAsPrimary": new.group }).to_string();
    lab.publish(&new.name, "ElastiCache Notification", &message);
}
