//! The lab end to end: real Valkey replication, the emulated Global Datastore control plane, the
//! lab's Route 53, and the real traffic-switch binary served by the lab's Lambda Runtime API.

use std::time::{Duration, Instant};

use aws_sdk_elasticache::error::ProvideErrorMetadata;
use failover_lab::{Lab, SnsFaults};
use failover_tests::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

async fn record_points_at(lab: &Lab, endpoint: &str) {
    let want = endpoint.to_owned();
    eventually(
        LIMIT,
        &format!("the writer CNAME to point at {endpoint}"),
        || async { (lab.writer_record().await.as_deref() == Some(want.as_str())).then_some(()) },
    )
    .await;
}

async fn idle(lab: &Lab) {
    eventually(LIMIT, "every function invocation to finish", || async {
        lab.state.functions_idle().then_some(())
    })
    .await;
}

/// What a well-behaved client does: resolve the writer CNAME through Route 53, connect to the
/// answer from its own Region, write.
async fn write_through_cname(lab: &Lab, from_region: &str, key: &str) -> redis::RedisResult<()> {
    let target = lab.writer_record().await.expect("the writer record exists");
    let addr = lab
        .state
        .resolve(&target, from_region)
        .expect("the record points at a lab endpoint");
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("SET")
        .arg(key)
        .arg("session-data")
        .query_async::<()>(&mut conn)
        .await
}

fn outcomes(lab: &Lab, region: &str) -> Vec<String> {
    lab.state
        .invocations()
        .iter()
        .filter(|r| r.region == region)
        .map(|r| r.response["outcome"].as_str().unwrap_or(&r.outcome).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_promotes_the_secondary_and_the_real_switch_moves_writers_to_it() {
    let lab = start_lab(|_| {}).await;
    let usw1 = &lab.state.regions[0];
    let usw2 = &lab.state.regions[1];
    assert_eq!(lab.writer_record().await.as_deref(), Some(usw1.endpoint.as_str()));
    write_through_cname(&lab, "us-west-2", "before")
        .await
        .expect("writes reach the primary across the link");

    let ec = elasticache_at(&lab.endpoints.elasticache, "us-west-2");
    let started = Instant::now();
    let out = failover_via_sdk(&lab, "us-west-2")
        .await
        .expect("the emulator accepts the failover");
    assert_eq!(
        out.global_replication_group().and_then(|g| g.status()),
        Some("modifying")
    );

    // The promotion really moves the data-plane roles.
    eventually(LIMIT, "us-west-2's Valkey to become master", || async {
        let info = failover_lab::valkey::replication_info(usw2.valkey_port)
            .await
            .ok()?;
        info.iter()
            .any(|(k, v)| k == "role" && v == "master")
            .then_some(())
    })
    .await;
    let promoted = started.elapsed();
    // ElastiCache published to us-west-2's topic; the traffic switch there flipped the record.
    record_points_at(&lab, &usw2.endpoint).await;
    let flipped = started.elapsed();
    write_through_cname(&lab, "us-west-2", "after")
        .await
        .expect("writes succeed on the new primary");
    let written = started.elapsed();
    eprintln!("failover → promoted {promoted:?} → CNAME flipped {flipped:?} → first write {written:?}");

    let described = ec
        .describe_global_replication_groups()
        .global_replication_group_id(&lab.endpoints.datastore_id)
        .show_member_info(true)
        .send()
        .await
        .expect("describe");
    let members = described.global_replication_groups()[0].members();
    let primary: Vec<_> = members.iter().filter(|m| m.role() == Some("PRIMARY")).collect();
    assert_eq!(primary.len(), 1);
    assert_eq!(primary[0].replication_group_id(), Some(usw2.group.as_str()));

    idle(&lab).await;
    assert_eq!(outcomes(&lab, "us-west-2"), ["switched"]);
    assert!(
        outcomes(&lab, "us-west-1").is_empty(),
        "only the new primary's Region is notified"
    );
    // The audit line the binary wrote to its log names the decision.
    assert!(
        lab.state.audits_caught_up(LIMIT).await,
        "every audit line arrives"
    );
    let audits = lab.state.audits();
    assert!(
        audits
            .iter()
            .any(|a| a["outcome"] == "switched" && a["SwitchesPerformed"] == 1)
    );
    // The old primary is a replica now: writes to it are refused, which is why clients must follow.
    let old = failover_lab::valkey::command(usw1.valkey_port, &["SET", "k", "v"]).await;
    assert!(
        format!("{old:?}").to_ascii_uppercase().contains("READONLY"),
        "{old:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_promotion_notification_switches_once_and_ends_on_the_primary() {
    let lab = start_lab(|_| {}).await;
    *lab.state.sns.lock().expect("sns") = SnsFaults {
        duplicate: true,
        ..SnsFaults::default()
    };
    let usw2 = &lab.state.regions[1];
    failover_lab::failover::start(&lab.state, &lab.endpoints.datastore_id, "us-west-2", &usw2.group)
        .map_err(|e| e.message)
        .expect("failover starts");
    record_points_at(&lab, &usw2.endpoint).await;
    idle(&lab).await;
    let mut seen = outcomes(&lab, "us-west-2");
    seen.sort();
    assert_eq!(seen, ["no_op", "switched"], "two deliveries, one switch");
    assert_eq!(lab.writer_record().await.as_deref(), Some(usw2.endpoint.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_promotion_delivered_after_a_failover_leaves_writers_on_the_true_primary() {
    let lab = start_lab(|_| {}).await;
    let usw1 = &lab.state.regions[0];
    let usw2 = &lab.state.regions[1];
    failover_lab::failover::start(&lab.state, &lab.endpoints.datastore_id, "us-west-2", &usw2.group)
        .map_err(|e| e.message)
        .expect("failover starts");
    record_points_at(&lab, &usw2.endpoint).await;
    idle(&lab).await;
    // us-west-1's promotion from an earlier failover, replayed late to us-west-1's subscribers.
    let old = serde_json::json!({"ElastiCache:ReplicationGroupPromotedAsPrimary": usw1.group}).to_string();
    lab.state.publish("us-west-1", "ElastiCache Notification", &old);
    eventually(LIMIT, "the stale notification to be handled", || async {
        let o = outcomes(&lab, "us-west-1");
        (!o.is_empty() && lab.state.functions_idle()).then_some(())
    })
    .await;
    assert_eq!(outcomes(&lab, "us-west-1"), ["no_op"]);
    assert!(
        lab.state.audits_caught_up(LIMIT).await,
        "every audit line arrives"
    );
    let audit: Vec<Value> = lab
        .state
        .audits()
        .into_iter()
        .filter(|a| a["function_region"] == "us-west-1")
        .collect();
    let reason = audit[0]["triggers"][0]["decisions"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("stale or duplicate"), "{reason}");
    assert_eq!(lab.writer_record().await.as_deref(), Some(usw2.endpoint.as_str()));
    write_through_cname(&lab, "us-west-1", "still-on-usw2")
        .await
        .expect("writers are still on the primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulated_elasticache_api_answers_wrong_calls_with_the_errors_aws_returns() {
    let lab = start_lab(|cfg| cfg.promotion_time = Duration::from_secs(3)).await;
    let ec = elasticache_at(&lab.endpoints.elasticache, "us-west-2");
    let id = lab.endpoints.datastore_id.clone();
    let usw1 = lab.state.regions[0].group.clone();
    let usw2 = lab.state.regions[1].group.clone();

    let e = ec
        .describe_global_replication_groups()
        .global_replication_group_id("ldgnf-nope")
        .send()
        .await
        .expect_err("unknown id");
    assert_eq!(e.code(), Some("GlobalReplicationGroupNotFoundFault"));

    let failover = |region: &'static str, group: String, gid: String| {
        let ec = ec.clone();
        async move {
            ec.failover_global_replication_group()
                .global_replication_group_id(gid)
                .primary_region(region)
                .primary_replication_group_id(group)
                .send()
                .await
        }
    };
    let e = failover("us-west-1", usw1.clone(), id.clone())
        .await
        .expect_err("already primary");
    assert_eq!(e.code(), Some("InvalidParameterValue"));
    let e = failover("us-west-1", usw2.clone(), id.clone())
        .await
        .expect_err("wrong Region");
    assert_eq!(e.code(), Some("InvalidParameterValue"));
    let e = failover("us-west-2", usw2.clone(), "ldgnf-nope".into())
        .await
        .expect_err("unknown id");
    assert_eq!(e.code(), Some("GlobalReplicationGroupNotFoundFault"));

    failover("us-west-2", usw2.clone(), id.clone())
        .await
        .expect("first failover");
    let e = failover("us-west-2", usw2.clone(), id.clone())
        .await
        .expect_err("while modifying");
    assert_eq!(e.code(), Some("InvalidGlobalReplicationGroupState"));

    let events = ec
        .describe_events()
        .source_identifier(&usw2)
        .send()
        .await
        .expect("events");
    assert!(
        events
            .events()
            .iter()
            .any(|e| e.message().is_some_and(|m| m.contains("Failover"))),
        "{events:?}"
    );
    let requests = lab.state.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.action == "FailoverGlobalReplicationGroup" && r.status == 400)
    );
}

async fn link_status(port: u16) -> Option<String> {
    let info = failover_lab::valkey::replication_info(port).await.ok()?;
    info.into_iter()
        .find(|(k, _)| k == "master_link_status")
        .map(|(_, v)| v)
}

async fn get(addr: std::net::SocketAddr, key: &str) -> redis::RedisResult<Option<String>> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("GET").arg(key).query_async(&mut conn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_fault_hurts_replication_and_cross_region_writes_but_not_local_ones() {
    let lab = start_lab(|_| {}).await;
    let usw1 = &lab.state.regions[0];
    let usw2 = &lab.state.regions[1];
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], usw1.valkey_port));
    let replica = std::net::SocketAddr::from(([127, 0, 0, 1], usw2.valkey_port));

    lab.state.set_link(failover_lab::link::LinkMode::Down);
    eventually(LIMIT, "replication to notice the cut link", || async {
        (link_status(usw2.valkey_port).await.as_deref() == Some("down")).then_some(())
    })
    .await;
    assert!(
        write_through_cname(&lab, "us-west-2", "cross").await.is_err(),
        "cross-Region write must fail"
    );
    write_through_cname(&lab, "us-west-1", "during-cut")
        .await
        .expect("local writes still work");
    assert_eq!(
        get(replica, "during-cut").await.expect("replica answers"),
        None,
        "nothing replicates"
    );

    lab.state.set_link(failover_lab::link::LinkMode::Up);
    eventually(
        LIMIT,
        "the write made during the cut to replicate after healing",
        || async {
            (get(replica, "during-cut").await.ok().flatten().as_deref() == Some("session-data")).then_some(())
        },
    )
    .await;
    assert_eq!(
        get(local, "during-cut").await.expect("primary"),
        Some("session-data".into())
    );

    // A degraded link adds at least its delay to every cross-Region round trip.
    lab.state.set_link(failover_lab::link::LinkMode::Degraded {
        delay_ms: 150,
        loss: 0.0,
    });
    let t = Instant::now();
    write_through_cname(&lab, "us-west-2", "slow")
        .await
        .expect("degraded, not down");
    assert!(t.elapsed() >= Duration::from_millis(150), "{:?}", t.elapsed());

    // A blackholed link swallows requests: the client's own timeout is what ends them.
    lab.state.set_link(failover_lab::link::LinkMode::Blackhole);
    let target = lab.state.resolve(&usw1.endpoint, "us-west-2").expect("endpoint");
    let hung = tokio::time::timeout(Duration::from_millis(800), get(target, "slow")).await;
    assert!(
        hung.is_err(),
        "a blackholed request must not be answered: {hung:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_third_region_a_failover_re_points_every_other_member_at_the_new_primary() {
    let lab = start_lab(|cfg| *cfg = cfg.clone().with_third_region("eu-west-1", "euw1")).await;
    let euw1 = &lab.state.regions[2];
    failover_lab::failover::start(&lab.state, &lab.endpoints.datastore_id, "eu-west-1", &euw1.group)
        .map_err(|e| e.message)
        .expect("failover starts");
    record_points_at(&lab, &euw1.endpoint).await;
    write_through_cname(&lab, "us-west-1", "from-usw1")
        .await
        .expect("writes reach eu-west-1");
    for r in &lab.state.regions[..2] {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], r.valkey_port));
        eventually(
            LIMIT,
            &format!("{} to replicate from the new primary", r.name),
            || async {
                (get(addr, "from-usw1").await.ok().flatten().as_deref() == Some("session-data")).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_promotion_is_repaired_by_the_reconcile_schedule_and_never_while_the_datastore_is_modifying() {
    let lab = start_lab(|cfg| {
        cfg.promotion_time = Duration::from_secs(3);
        cfg.reconcile_every = Some(Duration::from_millis(500));
    })
    .await;
    let usw1 = lab.state.regions[0].endpoint.clone();
    let usw2 = lab.state.regions[1].endpoint.clone();
    *lab.state.sns.lock().expect("sns") = SnsFaults {
        drop: true,
        ..SnsFaults::default()
    };
    failover_via_sdk(&lab, "us-west-2")
        .await
        .expect("failover starts");
    let started = Instant::now();
    // While the datastore is modifying (3 s), reconciles run and never move writers.
    while lab.state.gds().status != "available" {
        assert_eq!(
            lab.writer_record().await.as_deref(),
            Some(usw1.as_str()),
            "moved while modifying"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = Instant::now();
    // The notification was lost; the next tick (within one period plus the switch's time) repairs.
    record_points_at(&lab, &usw2).await;
    let repaired_after = settled.elapsed();
    assert!(
        repaired_after < Duration::from_secs(5),
        "repaired {repaired_after:?} after the datastore settled"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        lab.state.audits_caught_up(LIMIT).await,
        "every audit line arrives"
    );
    let audits = lab.state.audits();
    let waited: Vec<&Value> = audits
        .iter()
        .filter(|a| {
            a["triggers"][0]["decisions"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("never moves writers"))
        })
        .collect();
    assert!(
        !waited.is_empty(),
        "reconciles ran while the datastore was modifying"
    );
    assert!(waited.iter().all(|a| a["outcome"] == "no_op"));
    let repair = audits
        .iter()
        .find(|a| a["triggers"][0]["repaired"] == true)
        .expect("one reconcile says it repaired writers");
    assert_eq!(repair["outcome"], "switched");
    assert_eq!(repair["Repairs"], 1, "the Repairs metric counts it: {repair}");
    // Every later reconcile finds nothing to do.
    idle(&lab).await;
    let repairs = lab
        .state
        .audits()
        .iter()
        .filter(|a| a["triggers"][0]["repaired"] == true)
        .count();
    assert_eq!(repairs, 1);
}
