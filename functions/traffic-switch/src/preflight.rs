//! The traffic switch's readiness check: read-only calls, judged by [`failover_core::preflight`].

use failover_core::config::Routing;
use failover_core::fault::AwsFault;
use failover_core::preflight::{self, Call, Check, Checklist};
use failover_core::retry::{Budget, Deadline};

use crate::TrafficSwitch;

/// The IAM action a failed read needed (from the fault's operation, `Service.Action`).
fn action_of(f: &AwsFault) -> &'static str {
    match f.operation {
        "ElastiCache.DescribeCacheClusters" => "elasticache:DescribeCacheClusters",
        _ => "elasticache:DescribeReplicationGroups",
    }
}

impl TrafficSwitch {
    /// Two short attempts per read: a Region that does not answer costs seconds, not the
    /// invocation, and is reported as such.
    fn readiness_budget(&self, deadline: Deadline) -> Budget {
        Budget {
            policy: self.retry.probe(),
            deadline,
        }
    }

    /// Reads everything the switch depends on and judges it, item by item. Never fails: a read
    /// that fails is an item that FAILs, naming the fault.
    pub(crate) async fn preflight(&self, deadline: Deadline) -> Checklist {
        let budget = self.readiness_budget(deadline);
        let here = self.cfg.function_region.to_string();
        let mut calls = Vec::new();
        let mut checks = Vec::new();

        let ds = self
            .elasticache
            .describe_datastore(&self.cfg.datastore.id, &budget)
            .await
            .map(|d| d.value);
        calls.push(Call::of(
            "elasticache:DescribeGlobalReplicationGroups",
            &here,
            &ds,
        ));
        checks.push(preflight::datastore(&self.cfg.datastore, &ds));
        let view = ds.as_ref().ok();

        let topics = futures_util::future::join_all(self.cfg.datastore.members.iter().map(|m| {
            let budget = &budget;
            async move {
                let ec = self
                    .regional
                    .iter()
                    .find(|(r, _)| r == m.region.as_str())
                    .map_or(&self.elasticache, |(_, ec)| ec);
                (m, ec.notifications(m.group.as_str(), budget).await)
            }
        }));
        let subscriptions = async {
            match (&self.sns, &self.cfg.events_topic) {
                (Some(sns), Some(topic)) => Some(sns.subscriptions(topic, &budget).await),
                _ => None,
            }
        };
        let routing = self.routing_checks(view, deadline, &budget, &mut calls);
        let (topics, subscriptions, routing) = tokio::join!(topics, subscriptions, routing);
        checks.extend(routing);

        for (member, read) in &topics {
            let region = member.region.as_str();
            match read {
                Ok(_) => {
                    calls.push(Call::of("elasticache:DescribeReplicationGroups", region, read));
                    calls.push(Call::of("elasticache:DescribeCacheClusters", region, read));
                }
                Err(f) => {
                    if action_of(f) == "elasticache:DescribeCacheClusters" {
                        calls.push(Call::of("elasticache:DescribeReplicationGroups", region, &Ok(())));
                    }
                    calls.push(Call::of(action_of(f), region, read));
                }
            }
            checks.push(preflight::events_topic(
                member,
                self.cfg.events_topic.as_deref(),
                read,
            ));
        }

        let function = self.cfg.function_name.as_deref().map(|n| (here.as_str(), n));
        let subscriptions = subscriptions.unwrap_or_else(|| {
            Err(AwsFault::service(
                "SNS.ListSubscriptionsByTopic",
                Some("NotConfigured".into()),
                "EVENTS_TOPIC_ARN is not set".into(),
                false,
            ))
        });
        if self.cfg.events_topic.is_some() {
            calls.push(Call::of("sns:ListSubscriptionsByTopic", &here, &subscriptions));
        }
        checks.push(preflight::subscription(
            self.cfg.events_topic.as_deref(),
            function,
            &subscriptions,
        ));
        checks.push(preflight::permissions(&calls));
        let list = Checklist::of(checks);
        tracing::info!(ready = list.ready, summary = %list.summary, "readiness checked");
        list
    }

    /// The writer record (dns) or the cluster's endpoints and controls (arc).
    async fn routing_checks(
        &self,
        view: Option<&failover_core::observed::DatastoreView>,
        deadline: Deadline,
        budget: &Budget,
        calls: &mut Vec<Call>,
    ) -> Vec<Check> {
        let here = self.cfg.function_region.to_string();
        match &self.cfg.routing {
            Routing::Dns(dns) => {
                let read = self
                    .route53
                    .read_record(dns, budget)
                    .await
                    .map(|d| d.value.map(|r| r.view));
                calls.push(Call::of("route53:ListResourceRecordSets", &here, &read));
                vec![preflight::writer_record(&self.cfg.datastore, dns, view, &read)]
            }
            Routing::Arc(arc) => {
                let Some(cluster) = &self.arc else {
                    return vec![Check::fail(
                        "arc_endpoints",
                        "arc mode is configured but no ARC endpoints were built",
                        "check ARC_ENDPOINTS",
                    )];
                };
                let arns: Vec<String> = arc.controls.iter().map(|(_, a)| a.clone()).collect();
                let reads = cluster.read_each(&arns, &deadline).await;
                for (endpoint, read) in &reads {
                    calls.push(Call::of(
                        "route53-recovery-cluster:ListRoutingControls",
                        endpoint,
                        read,
                    ));
                }
                vec![
                    preflight::arc_endpoints(arc, &reads),
                    preflight::routing_controls(&self.cfg.datastore, arc, view, &reads),
                ]
            }
        }
    }
}
