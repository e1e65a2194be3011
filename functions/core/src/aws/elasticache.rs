//! ElastiCache: the Global Datastore as `DescribeGlobalReplicationGroups` reports it.

use aws_sdk_elasticache::Client;

use crate::fault::AwsFault;
use crate::ids::GlobalDatastoreId;
use crate::observed::{DatastoreView, MemberView, Role};
use crate::retry::{self, Budget, Done};

const DESCRIBE: &str = "ElastiCache.DescribeGlobalReplicationGroups";

#[derive(Debug, Clone)]
pub struct ElastiCache {
    client: Client,
}

impl ElastiCache {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Reads the Global Datastore with its members' roles and statuses.
    pub async fn describe_datastore(
        &self,
        id: &GlobalDatastoreId,
        budget: &Budget,
    ) -> Result<Done<DatastoreView>, AwsFault> {
        retry::run(DESCRIBE, budget, || async {
            let out = self
                .client
                .describe_global_replication_groups()
                .global_replication_group_id(id.as_str())
                .show_member_info(true)
                .send()
                .await
                .map_err(|e| AwsFault::from_sdk(DESCRIBE, &e))?;
            let group = out
                .global_replication_groups()
                .iter()
                .find(|g| g.global_replication_group_id() == Some(id.as_str()))
                .ok_or_else(|| {
                    AwsFault::service(
                        DESCRIBE,
                        Some("GlobalReplicationGroupNotFoundFault".to_owned()),
                        format!("the answer does not include Global Datastore {id}"),
                        false,
                    )
                })?;
            Ok(DatastoreView {
                id: id.to_string(),
                status: group.status().unwrap_or("unknown").to_owned(),
                members: group
                    .members()
                    .iter()
                    .map(|m| MemberView {
                        group: m.replication_group_id().unwrap_or_default().to_ascii_lowercase(),
                        region: m.replication_group_region().unwrap_or_default().to_owned(),
                        role: Role::parse(m.role().unwrap_or_default()),
                        status: m.status().unwrap_or("unknown").to_owned(),
                    })
                    .collect(),
            })
        })
        .await
    }
}

const FAILOVER: &str = "ElastiCache.FailoverGlobalReplicationGroup";
const EVENTS: &str = "ElastiCache.DescribeEvents";
/// Pages of `DescribeEvents` (100 events each) read before giving up: 20 000 events of one group
/// in the window is no account's normal.
const MAX_EVENT_PAGES: usize = 200;

impl ElastiCache {
    /// `FailoverGlobalReplicationGroup`, promoting `group` in `region`. Not retried on a
    /// permanent fault (`InvalidGlobalReplicationGroupState`: a failover is under way).
    pub async fn failover(
        &self,
        id: &GlobalDatastoreId,
        region: &str,
        group: &str,
        budget: &Budget,
    ) -> Result<Done<String>, AwsFault> {
        retry::run(FAILOVER, budget, || async {
            let out = self
                .client
                .failover_global_replication_group()
                .global_replication_group_id(id.as_str())
                .primary_region(region)
                .primary_replication_group_id(group)
                .send()
                .await
                .map_err(|e| AwsFault::from_sdk(FAILOVER, &e))?;
            Ok(out
                .global_replication_group()
                .and_then(|g| g.status())
                .unwrap_or("unknown")
                .to_owned())
        })
        .await
    }

    /// The newest failover or promotion event of replication group `group` within `window`,
    /// from this client's Region (call it once per member, in the member's Region). Reads every
    /// page: in a busy account a failover ten minutes ago can sit on the second one.
    pub async fn last_failover(
        &self,
        group: &str,
        window: std::time::Duration,
        budget: &Budget,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, AwsFault> {
        let minutes = i32::try_from(window.as_secs().div_ceil(60).clamp(1, 20_160)).unwrap_or(20_160);
        let mut newest = None;
        let mut marker: Option<String> = None;
        for _ in 0..MAX_EVENT_PAGES {
            let done = retry::run(EVENTS, budget, || {
                let marker = marker.clone();
                async move {
                    let out = self
                        .client
                        .describe_events()
                        .source_type(aws_sdk_elasticache::types::SourceType::ReplicationGroup)
                        .source_identifier(group)
                        .duration(minutes)
                        .max_records(100)
                        .set_marker(marker)
                        .send()
                        .await
                        .map_err(|e| AwsFault::from_sdk(EVENTS, &e))?;
                    let page_newest = out
                        .events()
                        .iter()
                        .filter(|e| e.source_identifier() == Some(group))
                        .filter(|e| {
                            e.message().is_some_and(|m| {
                                let m = m.to_ascii_lowercase();
                                m.contains("failover") || m.contains("promoted")
                            })
                        })
                        .filter_map(|e| chrono::DateTime::from_timestamp_millis(e.date()?.to_millis().ok()?))
                        .max();
                    Ok((
                        page_newest,
                        out.marker().filter(|m| !m.is_empty()).map(str::to_owned),
                    ))
                }
            })
            .await?;
            let (page_newest, next) = done.value;
            newest = newest.max(page_newest);
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(newest),
            }
        }
        Err(AwsFault::service(
            EVENTS,
            Some("TooManyPages".into()),
            format!("more than {MAX_EVENT_PAGES} pages of events for {group}: not all could be read"),
            false,
        ))
    }
}

const GROUPS: &str = "ElastiCache.DescribeReplicationGroups";
const CLUSTERS: &str = "ElastiCache.DescribeCacheClusters";

impl ElastiCache {
    /// Where each cache cluster of replication group `group` publishes its events (the
    /// notification topic is a per-cluster setting, set for all of them through the group).
    pub async fn notifications(
        &self,
        group: &str,
        budget: &Budget,
    ) -> Result<Vec<crate::preflight::ClusterNotification>, AwsFault> {
        let clusters = retry::run(GROUPS, budget, || async {
            let out = self
                .client
                .describe_replication_groups()
                .replication_group_id(group)
                .send()
                .await
                .map_err(|e| AwsFault::from_sdk(GROUPS, &e))?;
            Ok(out
                .replication_groups()
                .iter()
                .filter(|g| {
                    g.replication_group_id()
                        .is_some_and(|id| id.eq_ignore_ascii_case(group))
                })
                .flat_map(|g| g.member_clusters().iter().cloned())
                .collect::<Vec<String>>())
        })
        .await?
        .value;
        let mut found = Vec::with_capacity(clusters.len());
        for cluster in clusters {
            let notification = retry::run(CLUSTERS, budget, || async {
                let out = self
                    .client
                    .describe_cache_clusters()
                    .cache_cluster_id(&cluster)
                    .send()
                    .await
                    .map_err(|e| AwsFault::from_sdk(CLUSTERS, &e))?;
                Ok(out
                    .cache_clusters()
                    .first()
                    .and_then(|c| c.notification_configuration())
                    .map(|n| {
                        (
                            n.topic_arn().map(str::to_owned),
                            n.topic_status().map(str::to_owned),
                        )
                    }))
            })
            .await?
            .value;
            let (topic_arn, topic_status) = notification.unwrap_or((None, None));
            found.push(crate::preflight::ClusterNotification {
                cluster,
                topic_arn,
                topic_status,
            });
        }
        Ok(found)
    }
}
