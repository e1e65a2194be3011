//! `make demo`: the traffic switch handling a promotion against moto's Route 53.
//!
//! Until the local two-Region lab exists, ElastiCache is answered in-process (moto has no Global
//! Datastore): it reports `sessions-usw2` as PRIMARY. Route 53 is real moto, started by
//! `scripts/demo.sh`. The handler is the same code the Lambda binary runs.

use failover_tests::*;
use traffic_switch::TrafficSwitch;

#[tokio::main]
async fn main() {
    let r53 = route53_moto();
    let zone = private_zone(&r53, Some(EP1)).await;
    println!("Route 53 (moto at {}): private zone {zone}", moto_endpoint());
    show(&r53, &zone, "before").await;
    println!("ElastiCache (in-process stand-in): {DATASTORE} has {USW2} (us-west-2) as PRIMARY\n");

    let describe = primary_is(USW2);
    let switch = TrafficSwitch::with_clients(config(&zone, &[]), elasticache(&[&describe]), r53.clone());
    for name in [
        "promotion-this-region.json",
        "promotion-duplicate.json",
        "promotion-stale.json",
    ] {
        let inv = invoke(&switch, fixture(name)).await;
        let t = inv.audit.triggers.first();
        println!(
            "invoke events/traffic-switch/{name}\n  outcome:  {:?}\n  decision: {}",
            inv.audit.outcome,
            t.and_then(|t| t.decisions.last())
                .map_or("(none)".to_owned(), |p| p.reason().to_owned()),
        );
        show(&r53, &zone, "after").await;
        println!();
    }
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    println!(
        "The audit/EMF line each invocation writes to its log:\n{}",
        inv.audit.emf_line("ValkeyFailover", 0)
    );
}

async fn show(r53: &aws_sdk_route53::Client, zone: &str, when: &str) {
    match read_cname(r53, zone).await {
        Some((value, ttl)) => println!("  {when}: {RECORD} CNAME {value} (TTL {ttl})"),
        None => println!("  {when}: {RECORD} does not exist"),
    }
}
