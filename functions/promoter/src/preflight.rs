//! The promoter's readiness check: read-only calls, judged by [`failover_core::preflight`].

use std::time::{Duration, SystemTime};

use failover_core::config::{MissingEvents, MissingLag};
use failover_core::fault::AwsFault;
use failover_core::preflight::{self, AlarmRole, Call, Checklist};
use failover_core::retry::Deadline;
use futures_util::future::join_all;

use crate::Promoter;

impl Promoter {
    /// Reads everything the gates depend on and judges it, item by item. Never fails: a read
    /// that fails is an item that FAILs, naming the fault.
    pub(crate) async fn preflight(&self, deadline: Deadline) -> Checklist {
        let budget = self.probe_budget(deadline);
        let cfg = &self.cfg;
        let here = cfg.function_region.to_string();
        let own = cfg.datastore.member_in(&cfg.function_region);
        let no_client = |op: &'static str, region: &str| {
            AwsFault::service(
                op,
                Some("NoClient".into()),
                format!("no client for {region}"),
                false,
            )
        };
        let mut calls = Vec::new();
        let mut checks = Vec::new();

        let ds = match self.ec(&here) {
            Ok(ec) => ec
                .describe_datastore(&cfg.datastore.id, &budget)
                .await
                .map(|d| d.value),
            Err(_) => Err(no_client("ElastiCache.DescribeGlobalReplicationGroups", &here)),
        };
        calls.push(Call::of(
            "elasticache:DescribeGlobalReplicationGroups",
            &here,
            &ds,
        ));
        checks.push(preflight::datastore(&cfg.datastore, &ds));
        let is_primary = preflight::is_primary(ds.as_ref().ok(), &here);

        let alarm = |role: AlarmRole, region: String, name: String| {
            let budget = &budget;
            async move {
                let read = self.cloudwatch.alarm_state(&region, &name, budget).await;
                (role, region, name, read)
            }
        };
        let alarms = cfg
            .signal_alarms
            .iter()
            .map(|n| alarm(AlarmRole::Signal, here.clone(), n.clone()))
            .chain(
                cfg.vantage_alarms
                    .iter()
                    .map(|(r, n)| alarm(AlarmRole::Vantage, r.to_string(), n.clone())),
            );
        let mut metric = cfg.lag_metric.clone();
        if let Some(own) = own {
            for d in &mut metric.dimensions {
                d.1 = own.group.to_string();
            }
        }
        let listed = self
            .cloudwatch
            .list_dimensions(&here, &metric.namespace, &metric.name, &budget);
        let max_age = cfg.policy.lag_max_age;
        let latest = self.cloudwatch.latest(
            &here,
            &metric,
            (SystemTime::now(), max_age.max(Duration::from_secs(60))),
            Duration::from_secs(1),
            &budget,
        );
        let window = cfg.policy.cooldown.max(Duration::from_secs(60));
        let events = cfg.datastore.members.iter().map(|m| {
            let budget = &budget;
            async move {
                let read = match self.ec(m.region.as_str()) {
                    Ok(ec) => ec.last_failover(m.group.as_str(), window, budget).await,
                    Err(_) => Err(no_client("ElastiCache.DescribeEvents", m.region.as_str())),
                };
                (m, read)
            }
        });
        let (alarms, listed, latest, events) =
            tokio::join!(join_all(alarms), listed, latest, join_all(events));

        for (role, region, name, read) in &alarms {
            calls.push(Call::of("cloudwatch:DescribeAlarms", region, read));
            checks.push(preflight::alarm(*role, region, name, read));
        }
        if cfg.vantage_alarms.is_empty() {
            checks.push(preflight::no_vantage(cfg.policy.vantage_required));
        }
        calls.push(Call::of("cloudwatch:ListMetrics", &here, &listed));
        calls.push(Call::of("cloudwatch:GetMetricData", &here, &latest));
        checks.push(preflight::lag_metric(
            &metric,
            &here,
            is_primary,
            &listed,
            &latest,
            max_age,
            chrono::Utc::now(),
            cfg.policy.missing_lag == MissingLag::Allow,
        ));
        for (member, read) in &events {
            calls.push(Call::of(
                "elasticache:DescribeEvents",
                member.region.as_str(),
                read,
            ));
            checks.push(preflight::cooldown_events(
                member.region.as_str(),
                member.group.as_str(),
                read,
                cfg.policy.missing_events == MissingEvents::Block,
            ));
        }
        checks.push(preflight::permissions(&calls));
        let list = Checklist::of(checks);
        tracing::info!(ready = list.ready, summary = %list.summary, "readiness checked");
        list
    }
}
