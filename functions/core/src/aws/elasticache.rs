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
