//! A Global Datastore failover as the lab performs it: validated like AWS, `modifying` for the
//! configured promotion time, then the data-plane roles really move (`REPLICAOF NO ONE` on the
//! promoted member, the others re-pointed through the link when reachable) and the promotion is
//! published to the new primary Region's SNS subscribers.

use std::sync::Arc;

use crate::elasticache::ApiError;
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
        let mut g = lab.gds_mut();
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
        g.status = "modifying".into();
    }
    lab.event(region, group, "Failover to this replication group has started");
    let lab = Arc::clone(lab);
    tokio::spawn(async move { complete(lab, target).await });
    Ok(())
}

async fn complete(lab: Arc<LabState>, target: usize) {
    tokio::time::sleep(lab.cfg.promotion_time).await;
    let new = &lab.regions[target];
    if let Err(e) = valkey::command(new.valkey_port, &["REPLICAOF", "NO", "ONE"]).await {
        tracing::error!(error = %e, "promotion failed: the target did not take REPLICAOF NO ONE");
        lab.event(&new.name, &new.group, &format!("Failover failed: {e}"));
        lab.gds_mut().status = "available".into();
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
    {
        let mut g = lab.gds_mut();
        g.primary = target;
        g.status = "available".into();
        g.failovers += 1;
    }
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
