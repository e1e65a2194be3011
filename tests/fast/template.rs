//! `template.yaml` and the code must agree: every variable a function reads is set by the
//! template and the template sets nothing the function does not read; the timing the template
//! sets fits the Lambda timeout it gives; the dashboard in `infra/` reads the metrics the
//! functions emit.

use std::collections::BTreeSet;

use failover_core::audit::metrics;
use failover_core::config::{LAMBDA_PROVIDED_VARIABLES, PROMOTER_VARIABLES, SWITCH_VARIABLES};
use failover_core::retry::RetryPolicy;

const TEMPLATE: &str = include_str!("../../template.yaml");
const DASHBOARD: &str = include_str!("../../infra/dashboard.yaml");

const FUNCTIONS: [(&str, &str); 2] = [
    ("TrafficSwitchFunction", traffic_switch::FUNCTION),
    ("PromoterFunction", promoter::FUNCTION),
];

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines of a top-level entry (`  Name:`) of `yaml`, without its header, read by indentation
/// (the templates' CloudFormation tags make a generic YAML parser more trouble than it is worth).
fn block<'a>(yaml: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = yaml.lines().skip_while(|l| l.trim_end() != format!("  {name}:"));
    assert!(lines.next().is_some(), "{name} not found");
    lines
        .take_while(|l| l.trim().is_empty() || indent(l) > 2)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The value of `key:` directly under a top-level entry's `Properties:` (or, for a parameter,
/// directly under it), quotes removed.
fn field(yaml: &str, name: &str, key: &str) -> Option<String> {
    let lines = block(yaml, name);
    let depth = lines
        .iter()
        .position(|l| l.trim() == "Properties:")
        .map_or(4, |i| indent(lines[i]) + 2);
    lines
        .iter()
        .filter(|l| indent(l) == depth)
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
}

/// The keys and values under `Environment: Variables:` of the named resource.
fn environment_of(resource: &str) -> Vec<(String, String)> {
    let lines = block(TEMPLATE, resource);
    let start = lines
        .iter()
        .position(|l| l.trim() == "Variables:")
        .unwrap_or_else(|| panic!("{resource} has no Environment: Variables:"));
    let depth = indent(lines[start]) + 2;
    lines[start + 1..]
        .iter()
        .take_while(|l| indent(l) >= depth)
        .filter(|l| indent(l) == depth && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

fn names_of(resource: &str) -> BTreeSet<String> {
    environment_of(resource).into_iter().map(|(k, _)| k).collect()
}

/// A variable the template sets to a literal number.
fn literal_ms(resource: &str, var: &str) -> u64 {
    let (_, value) = environment_of(resource)
        .into_iter()
        .find(|(k, _)| k == var)
        .unwrap_or_else(|| panic!("{resource} does not set {var}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{resource} {var} is {value:?}, not a literal number"))
}

fn number(yaml: &str, name: &str, key: &str) -> u64 {
    let value = field(yaml, name, key).unwrap_or_else(|| panic!("{name} has no {key}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{name} {key} is {value:?}, not a number"))
}

fn assert_same(resource: &str, in_code: &[&str]) {
    let in_template = names_of(resource);
    let in_code: BTreeSet<String> = in_code.iter().map(|s| (*s).to_owned()).collect();
    let missing: Vec<_> = in_code.difference(&in_template).collect();
    let dead: Vec<_> = in_template.difference(&in_code).collect();
    assert!(
        missing.is_empty() && dead.is_empty(),
        "{resource}: read by the code but not set by template.yaml: {missing:?}; \
         set by template.yaml but read by no code: {dead:?}"
    );
}

#[test]
fn the_template_sets_exactly_the_variables_the_traffic_switch_reads() {
    assert_same("TrafficSwitchFunction", SWITCH_VARIABLES);
}

#[test]
fn the_template_sets_exactly_the_variables_the_promoter_reads() {
    assert_same("PromoterFunction", PROMOTER_VARIABLES);
}

#[test]
fn the_template_leaves_lambdas_own_variables_to_lambda() {
    for (resource, _) in FUNCTIONS {
        let set = names_of(resource);
        for var in LAMBDA_PROVIDED_VARIABLES {
            assert!(
                !set.contains(*var),
                "{resource} sets {var}, which Lambda reserves"
            );
        }
    }
}

#[test]
fn the_functions_are_built_as_the_workspace_binaries_they_are_named_after() {
    for (resource, binary) in FUNCTIONS {
        let lines = block(TEMPLATE, resource);
        let has = |text: &str| lines.iter().any(|l| l.trim() == text);
        assert!(has("BuildMethod: rust-cargolambda"), "{resource}");
        assert!(has(&format!("Binary: {binary}")), "{resource} builds {binary}");
        // The workspace root, so the shared tree is compiled once for both functions.
        assert!(has("CodeUri: ./"), "{resource}");
    }
    assert!(TEMPLATE.contains("Runtime: provided.al2023"));
    assert!(TEMPLATE.contains("Architectures: [arm64]"));
    assert!(TEMPLATE.contains("Handler: bootstrap"));
}

#[test]
fn each_deadline_leaves_room_for_a_poll_and_a_whole_aws_attempt() {
    let attempt = u64::try_from(RetryPolicy::default().attempt_timeout.as_millis()).unwrap_or(u64::MAX);
    for (resource, _) in FUNCTIONS {
        let timeout_ms = number(TEMPLATE, resource, "Timeout") * 1000;
        let margin = literal_ms(resource, "DEADLINE_MARGIN_MS");
        let poll = literal_ms(resource, "STABLE_POLL_MS");
        assert!(
            margin + poll + attempt < timeout_ms,
            "{resource}: margin {margin} ms + poll {poll} ms + one {attempt} ms attempt \
             must fit the {timeout_ms} ms timeout"
        );
    }
    // arc mode: one full round of the five cluster endpoints fits too.
    let slowest = number(TEMPLATE, "ArcEndpointTimeoutMs", "MaxValue");
    let margin = literal_ms("TrafficSwitchFunction", "DEADLINE_MARGIN_MS");
    let timeout_ms = number(TEMPLATE, "TrafficSwitchFunction", "Timeout") * 1000;
    assert!(
        5 * slowest + margin < timeout_ms,
        "5 × {slowest} ms endpoints + {margin} ms"
    );
}

#[test]
fn the_last_of_three_regions_can_still_promote_after_giving_way_twice() {
    // With two secondaries, the second in PROMOTION_PRIORITY waits 2 x PromotionDelaySeconds and
    // then needs room to evaluate again and call (the promoter keeps 15 s for that, plus its
    // deadline margin); a longer wait would leave it unable ever to promote automatically.
    let timeout_ms = number(TEMPLATE, "PromoterFunction", "Timeout") * 1000;
    let longest_wait_ms = 2 * number(TEMPLATE, "PromotionDelaySeconds", "MaxValue") * 1000;
    let margin = literal_ms("PromoterFunction", "DEADLINE_MARGIN_MS");
    assert!(
        longest_wait_ms + 15_000 + margin < timeout_ms,
        "wait {longest_wait_ms} ms + 15 s + margin {margin} ms must fit {timeout_ms} ms"
    );
}

#[test]
fn both_functions_run_one_at_a_time_and_keep_what_they_could_not_handle() {
    for (resource, _) in FUNCTIONS {
        assert_eq!(
            field(TEMPLATE, resource, "ReservedConcurrentExecutions").as_deref(),
            Some("1"),
            "{resource}"
        );
        let lines = block(TEMPLATE, resource);
        for key in ["MaximumRetryAttempts:", "MaximumEventAgeInSeconds:", "OnFailure:"] {
            assert!(
                lines.iter().any(|l| l.trim().starts_with(key)),
                "{resource} has no {key}"
            );
        }
        assert!(
            lines
                .iter()
                .any(|l| l.trim() == "Destination: !GetAtt FailedEventsQueue.Arn"),
            "{resource}"
        );
    }
}

#[test]
fn the_dashboard_reads_the_metrics_the_functions_emit() {
    for metric in [
        metrics::SWITCHES,
        metrics::NO_OPS,
        metrics::FAILURES,
        metrics::DURATION,
    ] {
        assert!(DASHBOARD.contains(&format!("\"{metric}\"")), "{metric}");
    }
    for (_, function) in FUNCTIONS {
        assert!(
            DASHBOARD.contains(&format!("\"Function\", \"{function}\"")),
            "{function}"
        );
    }
    assert!(DASHBOARD.contains("\"GlobalDatastore\", \"${GlobalDatastoreId}\""));
    assert_eq!(
        field(DASHBOARD, "MetricsNamespace", "Default"),
        field(TEMPLATE, "MetricsNamespace", "Default")
    );
    let lag = environment_of("PromoterFunction");
    let lag_of = |var: &str| {
        lag.iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(DASHBOARD.contains(&format!(
        "[\"{}\", \"{}\", \"{}\"",
        lag_of("LAG_METRIC_NAMESPACE"),
        lag_of("LAG_METRIC_NAME"),
        lag_of("LAG_METRIC_DIMENSION")
    )));
}

#[test]
fn the_dashboard_body_is_json_once_its_parameters_are_substituted() {
    let body: String = DASHBOARD
        .lines()
        .skip_while(|l| l.trim() != "DashboardBody: !Sub |")
        .skip(1)
        .take_while(|l| l.trim().is_empty() || indent(l) > 6)
        .collect::<Vec<_>>()
        .join("\n");
    // Every ${...} stands for a parameter or pseudo parameter; 5 fits each place one is used
    // (inside strings, and the lag threshold as a bare number).
    let mut substituted = String::new();
    let mut rest = body.as_str();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("closing brace") + start;
        substituted.push_str(&rest[..start]);
        substituted.push('5');
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let parsed: serde_json::Value =
        serde_json::from_str(&substituted).unwrap_or_else(|e| panic!("{e}\n{substituted}"));
    assert_eq!(parsed["widgets"].as_array().map(Vec::len), Some(7));
}

#[test]
fn both_functions_run_their_readiness_check_on_a_schedule_and_alarm_when_it_is_not_ready() {
    for ((resource, function), alarm) in FUNCTIONS
        .iter()
        .zip(["TrafficSwitchNotReadyAlarm", "PromoterNotReadyAlarm"])
    {
        let lines = block(TEMPLATE, resource);
        let at = lines
            .iter()
            .position(|l| l.trim() == "Preflight:")
            .unwrap_or_else(|| panic!("{resource} has no Preflight event"));
        let event: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| indent(l) > indent(lines[at]))
            .map(|l| l.trim())
            .collect();
        assert!(event.contains(&"Type: Schedule"), "{resource}: {event:?}");
        assert!(
            event.contains(&"Schedule: !Ref PreflightRate"),
            "{resource}: {event:?}"
        );
        let input = event
            .iter()
            .find_map(|l| l.strip_prefix("Input:"))
            .map(|i| i.trim().trim_matches('\''))
            .unwrap_or_else(|| panic!("{resource}: no Input in {event:?}"));
        // The input is the preflight command as the function parses it.
        let triggers = failover_core::intake::parse_event::<failover_core::switch::SwitchCommand>(input)
            .expect("the scheduled input parses");
        assert!(matches!(
            triggers.first(),
            Some(failover_core::intake::Trigger::Command(
                failover_core::switch::SwitchCommand::Preflight {}
            ))
        ));
        assert!(
            failover_core::intake::parse_event::<failover_core::promote::PromoterCommand>(input).is_ok(),
            "{input}"
        );

        assert_eq!(
            field(TEMPLATE, alarm, "MetricName").as_deref(),
            Some(metrics::READY)
        );
        assert_eq!(
            field(TEMPLATE, alarm, "Namespace").as_deref(),
            Some("!Ref MetricsNamespace")
        );
        assert_eq!(
            field(TEMPLATE, alarm, "ComparisonOperator").as_deref(),
            Some("LessThanThreshold")
        );
        assert_eq!(number(TEMPLATE, alarm, "Threshold"), 1);
        let dims = block(TEMPLATE, alarm).join("\n");
        assert!(
            dims.contains(&format!("Value: {function}")),
            "{alarm} watches the {function} dimension the EMF line carries"
        );
    }
}
