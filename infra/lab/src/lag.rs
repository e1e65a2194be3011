//! `AWS/ElastiCache GlobalDatastoreReplicationLag`, as the lab's equivalent: a heartbeat written
//! to the primary every `tick` and read back on each secondary; the lag is how old the heartbeat a
//! secondary holds is, less one tick (it is only written that often). Published in the
//! secondary's Region with the dimension `ReplicationGroupId` = its group, which is what the
//! promoter's data-loss gate reads. When the primary does not take the heartbeat (its Region is
//! dark, its node hung), nothing is published: the metric goes missing, as it does on AWS when
//! the primary Region is down, and the gate's `MISSING_LAG` policy decides.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cloudwatch::Datapoint;
use crate::lambda::now_ms;
use crate::{LabState, valkey};

pub const KEY: &str = "__lab:replication-heartbeat";

/// The lag (seconds) a secondary shows, from the heartbeat it holds.
pub fn lag_seconds(now_ms: u64, heartbeat_ms: u64, tick: Duration) -> f64 {
    let tick_ms = u64::try_from(tick.as_millis()).unwrap_or(0);
    now_ms.saturating_sub(heartbeat_ms).saturating_sub(tick_ms) as f64 / 1000.0
}

fn as_u64(v: &redis::Value) -> Option<u64> {
    match v {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// Runs until the lab stops.
pub async fn publisher(lab: Arc<LabState>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        if lab.readiness.lag_paused() {
            continue;
        }
        let g = lab.gds();
        let Some(primary) = lab.regions.get(g.primary) else {
            continue;
        };
        if lab.region_dark(&primary.name) {
            continue;
        }
        let beat = now_ms().to_string();
        if valkey::command(primary.valkey_port, &["SET", KEY, &beat])
            .await
            .is_err()
        {
            continue;
        }
        for (i, r) in lab.regions.iter().enumerate() {
            if i == g.primary || lab.region_dark(&r.name) {
                continue;
            }
            let Ok(held) = valkey::command(r.valkey_port, &["GET", KEY]).await else {
                continue;
            };
            let Some(heartbeat) = as_u64(&held) else { continue };
            let now = now_ms();
            lab.cloudwatch.put(Datapoint {
                region: r.name.clone(),
                namespace: "AWS/ElastiCache".into(),
                name: "GlobalDatastoreReplicationLag".into(),
                dimensions: BTreeMap::from([("ReplicationGroupId".to_owned(), r.group.clone())]),
                at_ms: now,
                value: lag_seconds(now, heartbeat, tick),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_within_one_tick_is_no_lag_and_an_older_one_is_its_age_less_a_tick() {
        let tick = Duration::from_millis(200);
        assert_eq!(lag_seconds(10_150, 10_000, tick), 0.0);
        assert_eq!(lag_seconds(12_200, 10_000, tick), 2.0);
        assert_eq!(
            lag_seconds(9_000, 10_000, tick),
            0.0,
            "clock skew is not negative lag"
        );
    }
}
