//! CloudWatch: alarm states (`DescribeAlarms`) and the latest datapoint of a metric
//! (`GetMetricData`), in any member Region — the vantage points on the primary live there.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime as SmithyTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StateValue};
use chrono::{DateTime, Utc};

use crate::config::MetricId;
use crate::fault::AwsFault;
use crate::intake::AlarmState;
use crate::retry::{self, Budget};

const DESCRIBE: &str = "CloudWatch.DescribeAlarms";
const GET: &str = "CloudWatch.GetMetricData";

/// One client per Region.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    clients: Vec<(String, Client)>,
}

impl CloudWatch {
    pub fn new<'a>(sdk: &SdkConfig, regions: impl IntoIterator<Item = &'a str>) -> Self {
        Self::from_clients(
            regions
                .into_iter()
                .map(|r| {
                    let conf = aws_sdk_cloudwatch::config::Builder::from(sdk)
                        .region(aws_sdk_cloudwatch::config::Region::new(r.to_owned()))
                        .build();
                    (r.to_owned(), Client::from_conf(conf))
                })
                .collect(),
        )
    }

    pub fn from_clients(clients: Vec<(String, Client)>) -> Self {
        Self { clients }
    }

    fn client(&self, region: &str, op: &'static str) -> Result<&Client, AwsFault> {
        self.clients
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, c)| c)
            .ok_or_else(|| {
                AwsFault::service(
                    op,
                    Some("NoClient".into()),
                    format!("no CloudWatch client for {region}"),
                    false,
                )
            })
    }

    /// The alarm's state now. A missing alarm is a permanent fault (a configuration error).
    pub async fn alarm_state(
        &self,
        region: &str,
        name: &str,
        budget: &Budget,
    ) -> Result<AlarmState, AwsFault> {
        let client = self.client(region, DESCRIBE)?;
        let done = retry::run(DESCRIBE, budget, || async {
            let out = client
                .describe_alarms()
                .alarm_names(name)
                .send()
                .await
                .map_err(|e| AwsFault::from_sdk(DESCRIBE, &e))?;
            let state = out
                .metric_alarms()
                .iter()
                .find(|a| a.alarm_name() == Some(name))
                .and_then(|a| a.state_value().cloned())
                .or_else(|| {
                    out.composite_alarms()
                        .iter()
                        .find(|a| a.alarm_name() == Some(name))
                        .and_then(|a| a.state_value().cloned())
                });
            match state {
                Some(StateValue::Alarm) => Ok(AlarmState::Alarm),
                Some(StateValue::Ok) => Ok(AlarmState::Ok),
                Some(_) => Ok(AlarmState::InsufficientData),
                None => Err(AwsFault::service(
                    DESCRIBE,
                    Some("AlarmNotFound".into()),
                    format!("alarm {name} does not exist in {region}"),
                    false,
                )),
            }
        })
        .await?;
        Ok(done.value)
    }

    /// The newest datapoint (Maximum per `period`) within `lookback` before `now` (the shell's
    /// clock, passed in).
    pub async fn latest(
        &self,
        region: &str,
        metric: &MetricId,
        window: (SystemTime, Duration),
        period: Duration,
        budget: &Budget,
    ) -> Result<Option<(f64, DateTime<Utc>)>, AwsFault> {
        let client = self.client(region, GET)?;
        let (now, lookback) = window;
        let query = MetricDataQuery::builder()
            .id("lag")
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(&metric.namespace)
                            .metric_name(&metric.name)
                            .set_dimensions(Some(
                                metric
                                    .dimensions
                                    .iter()
                                    .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                                    .collect(),
                            ))
                            .build(),
                    )
                    .period(i32::try_from(period.as_secs().max(1)).unwrap_or(60))
                    .stat("Maximum")
                    .build(),
            )
            .build();
        let done = retry::run(GET, budget, || async {
            let out = client
                .get_metric_data()
                .metric_data_queries(query.clone())
                .start_time(SmithyTime::from(now - lookback))
                .end_time(SmithyTime::from(now + Duration::from_secs(60)))
                .send()
                .await
                .map_err(|e| AwsFault::from_sdk(GET, &e))?;
            let newest = out.metric_data_results().first().and_then(|r| {
                r.timestamps()
                    .iter()
                    .zip(r.values())
                    .filter_map(|(t, v)| Some((*v, DateTime::from_timestamp_millis(t.to_millis().ok()?)?)))
                    .max_by_key(|(_, t)| *t)
            });
            Ok(newest)
        })
        .await?;
        Ok(done.value)
    }
}

const LIST: &str = "CloudWatch.ListMetrics";
const MAX_METRIC_PAGES: usize = 20;

impl CloudWatch {
    /// Every dimension set under which `namespace`/`name` exists in `region` (`ListMetrics`,
    /// every page): what the readiness check compares the configured dimension with.
    pub async fn list_dimensions(
        &self,
        region: &str,
        namespace: &str,
        name: &str,
        budget: &Budget,
    ) -> Result<crate::preflight::Listed, AwsFault> {
        let client = self.client(region, LIST)?;
        retry::all_pages(LIST, budget, MAX_METRIC_PAGES, |token| async move {
            let out = client
                .list_metrics()
                .namespace(namespace)
                .metric_name(name)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsFault::from_sdk(LIST, &e))?;
            let sets = out
                .metrics()
                .iter()
                .map(|m| {
                    m.dimensions()
                        .iter()
                        .map(|d| {
                            (
                                d.name().unwrap_or_default().to_owned(),
                                d.value().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            Ok((sets, out.next_token().map(str::to_owned)))
        })
        .await
    }
}
