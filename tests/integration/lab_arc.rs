//! The lab's Route 53 ARC cluster, driven through the real `aws-sdk-route53recoverycluster`: shared
//! state across five endpoints, safety rules, and each endpoint fault the `arc` mode must survive.

use aws_sdk_route53recoverycluster::error::ProvideErrorMetadata;
use aws_sdk_route53recoverycluster::types::{RoutingControlState, UpdateRoutingControlStateEntry};
use failover_lab::arc::EndpointMode;
use failover_tests::*;

fn entry(arn: &str, on: bool) -> UpdateRoutingControlStateEntry {
    UpdateRoutingControlStateEntry::builder()
        .routing_control_arn(arn)
        .routing_control_state(if on {
            RoutingControlState::On
        } else {
            RoutingControlState::Off
        })
        .build()
        .expect("entry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_endpoints_share_one_state_and_an_atomic_flip_moves_the_writer_control() {
    let lab = start_lab(|_| {}).await;
    let usw1 = lab.endpoints.arc_controls["us-west-1"].clone();
    let usw2 = lab.endpoints.arc_controls["us-west-2"].clone();
    assert_eq!(lab.endpoints.arc_endpoints.len(), 5);
    let (r0, e0) = &lab.endpoints.arc_endpoints[0];
    let (r3, e3) = &lab.endpoints.arc_endpoints[3];

    let listed = arc_client(e0, r0)
        .list_routing_controls()
        .send()
        .await
        .expect("list");
    let on: Vec<_> = listed
        .routing_controls()
        .iter()
        .filter(|c| c.routing_control_state() == Some(&RoutingControlState::On))
        .filter_map(|c| c.routing_control_arn())
        .collect();
    assert_eq!(on, [usw1.as_str()], "the primary's control starts On");

    arc_client(e0, r0)
        .update_routing_control_states()
        .update_routing_control_state_entries(entry(&usw2, true))
        .update_routing_control_state_entries(entry(&usw1, false))
        .send()
        .await
        .expect("one call moves On from usw1 to usw2");
    // Read back through another endpoint: one cluster, one state.
    let got = arc_client(e3, r3)
        .get_routing_control_state()
        .routing_control_arn(&usw2)
        .send()
        .await
        .expect("get");
    assert_eq!(got.routing_control_state(), &RoutingControlState::On);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_rules_reject_two_on_or_none_on_unless_overridden() {
    let lab = start_lab(|_| {}).await;
    let usw1 = lab.endpoints.arc_controls["us-west-1"].clone();
    let usw2 = lab.endpoints.arc_controls["us-west-2"].clone();
    let (r, e) = &lab.endpoints.arc_endpoints[1];
    let c = arc_client(e, r);

    let two_on = c
        .update_routing_control_state()
        .routing_control_arn(&usw2)
        .routing_control_state(RoutingControlState::On)
        .send()
        .await
        .expect_err("two Regions On");
    assert_eq!(two_on.code(), Some("ConflictException"));
    assert!(
        two_on.message().is_some_and(|m| m.contains("at-most-one-on")),
        "{two_on:?}"
    );

    let none_on = c
        .update_routing_control_state()
        .routing_control_arn(&usw1)
        .routing_control_state(RoutingControlState::Off)
        .send()
        .await
        .expect_err("no Region On");
    assert_eq!(none_on.code(), Some("ConflictException"));
    assert!(lab.state.arc.states()[&usw1], "a rejected change changes nothing");

    let rule = lab
        .endpoints
        .arc_safety_rules
        .iter()
        .find(|r| r.ends_with("at-most-one-on"))
        .expect("rule")
        .clone();
    c.update_routing_control_state()
        .routing_control_arn(&usw2)
        .routing_control_state(RoutingControlState::On)
        .safety_rules_to_override(rule)
        .send()
        .await
        .expect("break glass: the named rule is overridden");
    assert!(lab.state.arc.states()[&usw2]);

    let missing = c
        .get_routing_control_state()
        .routing_control_arn(
            "arn:aws:route53-recovery-control::000000000000:controlpanel/lab/routingcontrol/nope",
        )
        .send()
        .await
        .expect_err("unknown control");
    assert_eq!(missing.code(), Some("ResourceNotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_fault_fails_the_way_a_broken_endpoint_does() {
    let lab = start_lab(|_| {}).await;
    let arn = lab.endpoints.arc_controls["us-west-1"].clone();
    let get = |i: usize| {
        let (r, e) = lab.endpoints.arc_endpoints[i].clone();
        let arn = arn.clone();
        async move {
            arc_client(&e, &r)
                .get_routing_control_state()
                .routing_control_arn(arn)
                .send()
                .await
        }
    };
    lab.state.arc.set_mode(0, EndpointMode::Refuse);
    lab.state.arc.set_mode(1, EndpointMode::Hang);
    lab.state.arc.set_mode(2, EndpointMode::Error5xx);
    lab.state.arc.set_mode(3, EndpointMode::Throttle);

    let refused = get(0).await.expect_err("refused");
    assert!(
        matches!(
            refused,
            aws_sdk_route53recoverycluster::error::SdkError::DispatchFailure(_)
        ),
        "{refused:?}"
    );
    let hung = get(1).await.expect_err("hangs");
    assert!(
        matches!(
            hung,
            aws_sdk_route53recoverycluster::error::SdkError::TimeoutError(_)
        ),
        "{hung:?}"
    );
    assert_eq!(
        get(2).await.expect_err("5xx").code(),
        Some("InternalServerException")
    );
    assert_eq!(
        get(3).await.expect_err("throttled").code(),
        Some("ThrottlingException")
    );
    get(4).await.expect("the fifth endpoint still answers");

    lab.state.arc.set_mode(0, EndpointMode::Ok);
    get(0).await.expect("a healed endpoint answers again");
}
