//! The ElastiCache Global Datastore control plane moto lacks, on the query protocol the Rust SDK
//! speaks: `DescribeGlobalReplicationGroups`, `DescribeReplicationGroups`,
//! `FailoverGlobalReplicationGroup`, `DescribeEvents`, with AWS's error codes and HTTP statuses.
//! The calling Region is read from the SigV4 credential scope, as AWS's regional endpoints imply.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::wire::{ApiError, esc, params, signing_region};
use crate::{ApiRequest, LabState, lambda::now_ms};

use crate::wire::NS;

pub fn router(state: Arc<LabState>) -> Router {
    Router::new().route("/", post(handle)).with_state(state)
}

fn ok(action: &str, result: &str) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{NS}\"><{action}Result>{result}</{action}Result>\
         <ResponseMetadata><RequestId>lab-{}</RequestId></ResponseMetadata></{action}Response>",
        now_ms()
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

async fn handle(State(lab): State<Arc<LabState>>, headers: HeaderMap, body: Bytes) -> Response {
    let p = params(&body);
    let action = p.get("Action").cloned().unwrap_or_default();
    let region = signing_region(&headers).unwrap_or_else(|| "unknown".into());
    // One snapshot of the datastore per request: what the answer says is what the log records.
    let seen = lab.gds();
    let result = if lab.region_dark(&region) {
        // A dark Region's control-plane endpoint does not answer either.
        Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("the {region} endpoint is unavailable"),
        ))
    } else {
        match action.as_str() {
            "DescribeGlobalReplicationGroups" => describe_global(&lab, &seen, &p),
            "DescribeReplicationGroups" => describe_groups(&lab, &region, &p),
            "FailoverGlobalReplicationGroup" => failover(&lab, &p),
            "DescribeEvents" => describe_events(&lab, &region, &p),
            "DescribeCacheClusters" => describe_clusters(&lab, &region, &p),
            "ModifyReplicationGroup" => modify_group(&lab, &region, &p),
            other => Err(ApiError::new(
                400,
                "InvalidAction",
                format!("the lab does not emulate {other:?}"),
            )),
        }
    };
    let status = match &result {
        Ok(_) => 200,
        Err(e) => e.status.as_u16(),
    };
    let mut params: std::collections::BTreeMap<String, String> = p.into_iter().collect();
    if let Some(trace) = crate::trace_of(&headers) {
        params.insert("trace".into(), trace);
    }
    if action == "DescribeGlobalReplicationGroups" && status == 200 {
        // What the caller was told, for checking its decisions against the datastore's history.
        params.insert("answer_status".into(), seen.status.clone());
        params.insert(
            "answer_primary".into(),
            lab.regions
                .get(seen.primary)
                .map(|r| r.name.clone())
                .unwrap_or_default(),
        );
    }
    let delay = lab.api_delay("elasticache", &action);
    lab.record(ApiRequest {
        service: "elasticache".into(),
        region,
        action,
        params,
        status,
        at_ms: now_ms(),
    });
    // The answer reflects the datastore when the request arrived, and reaches the caller late.
    tokio::time::sleep(delay).await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn global_xml(lab: &LabState, g: &crate::GdsState, show_members: bool) -> String {
    let members = if show_members {
        let m: String = lab
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "<GlobalReplicationGroupMember><ReplicationGroupId>{}</ReplicationGroupId>\
                     <ReplicationGroupRegion>{}</ReplicationGroupRegion><Role>{}</Role>\
                     <AutomaticFailover>enabled</AutomaticFailover><Status>associated</Status>\
                     </GlobalReplicationGroupMember>",
                    esc(&r.group),
                    esc(&r.name),
                    if i == g.primary { "PRIMARY" } else { "SECONDARY" }
                )
            })
            .collect();
        format!("<Members>{m}</Members>")
    } else {
        String::new()
    };
    format!(
        "<GlobalReplicationGroupId>{}</GlobalReplicationGroupId><GlobalReplicationGroupDescription>lab</GlobalReplicationGroupDescription>\
         <Status>{}</Status><CacheNodeType>cache.r7g.large</CacheNodeType><Engine>valkey</Engine><EngineVersion>8.0</EngineVersion>\
         {members}<ClusterEnabled>false</ClusterEnabled><ARN>arn:aws:elasticache::000000000000:globalreplicationgroup:{}</ARN>",
        esc(&lab.cfg.datastore_id),
        esc(&g.status),
        esc(&lab.cfg.datastore_id)
    )
}

fn describe_global(
    lab: &LabState,
    g: &crate::GdsState,
    p: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    if let Some(id) = p.get("GlobalReplicationGroupId")
        && id != &lab.cfg.datastore_id
    {
        return Err(ApiError::new(
            404,
            "GlobalReplicationGroupNotFoundFault",
            format!("GlobalReplicationGroup {id} not found"),
        ));
    }
    let show = p.get("ShowMemberInfo").is_some_and(|v| v == "true");
    Ok(ok(
        "DescribeGlobalReplicationGroups",
        &format!(
            "<GlobalReplicationGroups><GlobalReplicationGroup>{}</GlobalReplicationGroup></GlobalReplicationGroups>",
            global_xml(lab, g, show)
        ),
    ))
}

fn describe_groups(lab: &LabState, region: &str, p: &HashMap<String, String>) -> Result<Response, ApiError> {
    let g = lab.gds();
    let wanted = p.get("ReplicationGroupId");
    let mut found = String::new();
    for (i, r) in lab.regions.iter().enumerate() {
        if r.name != region || wanted.is_some_and(|w| w != &r.group) {
            continue;
        }
        found.push_str(&format!(
            "<ReplicationGroup><ReplicationGroupId>{}</ReplicationGroupId><Description>lab</Description>\
             <GlobalReplicationGroupInfo><GlobalReplicationGroupId>{}</GlobalReplicationGroupId>\
             <GlobalReplicationGroupMemberRole>{}</GlobalReplicationGroupMemberRole></GlobalReplicationGroupInfo>\
             <Status>{}</Status><MemberClusters><ClusterId>{}-001</ClusterId></MemberClusters>\
             <NodeGroups><NodeGroup><NodeGroupId>0001</NodeGroupId><Status>available</Status>\
             <PrimaryEndpoint><Address>{}</Address><Port>6379</Port></PrimaryEndpoint></NodeGroup></NodeGroups>\
             <AutomaticFailover>enabled</AutomaticFailover><Engine>valkey</Engine></ReplicationGroup>",
            esc(&r.group),
            esc(&lab.cfg.datastore_id),
            if i == g.primary { "PRIMARY" } else { "SECONDARY" },
            if g.status == "modifying" { "modifying" } else { "available" },
            esc(&r.group),
            esc(&r.endpoint)
        ));
    }
    if found.is_empty()
        && let Some(w) = wanted
    {
        return Err(ApiError::new(
            404,
            "ReplicationGroupNotFoundFault",
            format!("ReplicationGroup {w} not found in {region}"),
        ));
    }
    Ok(ok(
        "DescribeReplicationGroups",
        &format!("<ReplicationGroups>{found}</ReplicationGroups>"),
    ))
}

/// `DescribeCacheClusters` for one member cluster (`<group>-001`, the one node of each lab group):
/// its notification topic and status, which the readiness check reads.
fn describe_clusters(
    lab: &LabState,
    region: &str,
    p: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let Some(id) = p.get("CacheClusterId") else {
        return Err(ApiError::new(
            400,
            "InvalidParameterValue",
            "the lab answers DescribeCacheClusters for one CacheClusterId",
        ));
    };
    let Some(r) = lab
        .regions
        .iter()
        .find(|r| r.name == region && format!("{}-001", r.group) == *id)
    else {
        return Err(ApiError::new(
            404,
            "CacheClusterNotFound",
            format!("CacheCluster {id} not found in {region}"),
        ));
    };
    let notification = lab
        .readiness
        .notification(region)
        .map(|n| {
            format!(
                "<NotificationConfiguration><TopicArn>{}</TopicArn><TopicStatus>{}</TopicStatus></NotificationConfiguration>",
                esc(&n.topic_arn),
                esc(&n.topic_status)
            )
        })
        .unwrap_or_default();
    Ok(ok(
        "DescribeCacheClusters",
        &format!(
            "<CacheClusters><CacheCluster><CacheClusterId>{}</CacheClusterId><ReplicationGroupId>{}</ReplicationGroupId>\
             <CacheClusterStatus>available</CacheClusterStatus><Engine>valkey</Engine>{notification}</CacheCluster></CacheClusters>",
            esc(id),
            esc(&r.group)
        ),
    ))
}

/// `ModifyReplicationGroup`, for what the readiness check's fix sets: `NotificationTopicArn` and
/// `NotificationTopicStatus`. Anything else is refused rather than ignored.
fn modify_group(lab: &LabState, region: &str, p: &HashMap<String, String>) -> Result<Response, ApiError> {
    let group = p.get("ReplicationGroupId").cloned().unwrap_or_default();
    if !lab.regions.iter().any(|r| r.name == region && r.group == group) {
        return Err(ApiError::new(
            404,
            "ReplicationGroupNotFoundFault",
            format!("ReplicationGroup {group} not found in {region}"),
        ));
    }
    let unsupported: Vec<&String> = p
        .keys()
        .filter(|k| {
            ![
                "Action",
                "Version",
                "ReplicationGroupId",
                "NotificationTopicArn",
                "NotificationTopicStatus",
                "ApplyImmediately",
            ]
            .contains(&k.as_str())
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(ApiError::new(
            400,
            "InvalidParameterCombination",
            format!("the lab's ModifyReplicationGroup sets only the notification topic, not {unsupported:?}"),
        ));
    }
    let status = p.get("NotificationTopicStatus").map(String::as_str);
    if status.is_some_and(|s| s != "active" && s != "inactive") {
        return Err(ApiError::new(
            400,
            "InvalidParameterValue",
            "NotificationTopicStatus must be active or inactive",
        ));
    }
    lab.readiness
        .set_notification(region, p.get("NotificationTopicArn").map(String::as_str), status);
    Ok(ok(
        "ModifyReplicationGroup",
        &format!(
            "<ReplicationGroup><ReplicationGroupId>{}</ReplicationGroupId><Status>available</Status></ReplicationGroup>",
            esc(&group)
        ),
    ))
}

fn failover(lab: &Arc<LabState>, p: &HashMap<String, String>) -> Result<Response, ApiError> {
    let id = p
        .get("GlobalReplicationGroupId")
        .map(String::as_str)
        .unwrap_or_default();
    let region = p.get("PrimaryRegion").map(String::as_str).unwrap_or_default();
    let group = p
        .get("PrimaryReplicationGroupId")
        .map(String::as_str)
        .unwrap_or_default();
    crate::failover::start(lab, id, region, group)?;
    Ok(ok(
        "FailoverGlobalReplicationGroup",
        &format!(
            "<GlobalReplicationGroup>{}</GlobalReplicationGroup>",
            global_xml(lab, &lab.gds(), true)
        ),
    ))
}

fn describe_events(lab: &LabState, region: &str, p: &HashMap<String, String>) -> Result<Response, ApiError> {
    let source = p.get("SourceIdentifier");
    let minutes: u64 = p.get("Duration").and_then(|d| d.parse().ok()).unwrap_or(60);
    let since = now_ms().saturating_sub(minutes * 60_000);
    // Paged as AWS pages it: MaxRecords 20–100 (default 100), an opaque Marker for the next page.
    let max: usize = match p.get("MaxRecords").map(|m| m.parse::<usize>()) {
        None => 100,
        Some(Ok(m)) if (20..=100).contains(&m) => m,
        Some(_) => {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                "MaxRecords must be between 20 and 100",
            ));
        }
    };
    let from: usize = match p
        .get("Marker")
        .map(|m| m.strip_prefix("lab-").and_then(|n| n.parse().ok()))
    {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return Err(ApiError::new(400, "InvalidParameterValue", "invalid Marker")),
    };
    let matching: Vec<crate::LabEvent> = lab
        .events()
        .into_iter()
        .rev()
        .filter(|e| e.region == region && e.at_ms >= since && source.is_none_or(|s| s == &e.source))
        .collect();
    let events: String = matching
        .iter()
        .skip(from)
        .take(max)
        .map(|e| {
            format!(
                "<Event><SourceIdentifier>{}</SourceIdentifier><SourceType>{}</SourceType><Message>{}</Message><Date>{}</Date></Event>",
                esc(&e.source),
                esc(&e.source_type),
                esc(&e.message),
                chrono::DateTime::from_timestamp_millis(i64::try_from(e.at_ms).unwrap_or(0))
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default()
            )
        })
        .collect();
    let marker = if from + max < matching.len() {
        format!("<Marker>lab-{}</Marker>", from + max)
    } else {
        String::new()
    };
    Ok(ok(
        "DescribeEvents",
        &format!("{marker}<Events>{events}</Events>"),
    ))
}
