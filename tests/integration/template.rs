//! `template.yaml` and the code must agree on configuration: every variable the function reads
//! is set by the template, and the template sets nothing the function does not read.

use std::collections::BTreeSet;

use failover_core::config::{PROMOTER_VARIABLES, SWITCH_VARIABLES};

const TEMPLATE: &str = include_str!("../../template.yaml");

/// The keys under `Environment: Variables:` of the named resource, read by indentation (the
/// template's CloudFormation tags make a generic YAML parser more trouble than it is worth).
fn environment_of(resource: &str) -> BTreeSet<String> {
    let mut lines = TEMPLATE
        .lines()
        .skip_while(|l| l.trim_end() != format!("  {resource}:"));
    assert!(
        lines.next().is_some(),
        "resource {resource} not found in template.yaml"
    );
    let mut lines = lines
        .take_while(|l| l.is_empty() || l.starts_with("   "))
        .skip_while(|l| l.trim() != "Variables:");
    let header = lines.next().expect("the resource has Environment: Variables:");
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.len() - l.trim_start().len() >= indent)
        .filter(|l| l.len() - l.trim_start().len() == indent)
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_owned()))
        .collect()
}

#[test]
fn the_template_sets_exactly_the_variables_the_traffic_switch_reads() {
    let in_template = environment_of("TrafficSwitchFunction");
    let in_code: BTreeSet<String> = SWITCH_VARIABLES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(in_template, in_code);
}

#[test]
fn the_template_sets_exactly_the_variables_the_promoter_reads() {
    let in_template = environment_of("PromoterFunction");
    let in_code: BTreeSet<String> = PROMOTER_VARIABLES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(in_template, in_code);
}

#[test]
fn the_functions_are_built_as_the_workspace_binaries_they_are_named_after() {
    assert!(TEMPLATE.contains("Binary: traffic-switch"));
    assert!(TEMPLATE.contains("Binary: promoter"));
    assert!(TEMPLATE.contains("BuildMethod: rust-cargolambda"));
    assert!(TEMPLATE.contains("Handler: bootstrap"));
}
