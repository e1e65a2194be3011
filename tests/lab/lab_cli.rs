//! The `lab` CLI does what it documents: a real `lab up` in a directory of its own, and every
//! command `lab help` lists run against it as an operator would type it, each checked for its
//! effect. The list is read from `lab help`, so a command documented later without a test here
//! fails this test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use failover_tests::*;
use serde_json::Value;

fn lab_bin() -> PathBuf {
    workspace_root().join("target/debug/lab")
}

/// Stops the lab when the test ends, however it ends.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cli {
    root: PathBuf,
    ran: Vec<Vec<String>>,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(lab_bin());
        c.args(args)
            .env("LAB_ROOT", &self.root)
            .env("LAB_BINARY_DIR", workspace_root().join("target/debug"))
            .current_dir(workspace_root());
        if let Ok(v) = failover_lab::valkey::find_server(&workspace_root()) {
            c.env("VALKEY_SERVER", v);
        }
        c
    }

    /// Runs `lab <args>`, which must succeed; returns its output as JSON (or as a string).
    fn run(&mut self, args: &[&str]) -> Value {
        self.ran.push(args.iter().map(|a| (*a).to_owned()).collect());
        let out = self.command(args).output().expect("lab runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "lab {}: {}\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or(Value::String(stdout))
    }

    fn until(&mut self, args: &[&str], what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let v = self.run(args);
            if ok(&v) {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The command each `lab help` line documents: the words after `lab` up to the first
/// placeholder or choice.
fn documented(help: &str) -> Vec<Vec<String>> {
    help.lines()
        .filter_map(|l| l.strip_prefix("lab "))
        .map(|l| {
            let command = l.split("  ").next().unwrap_or_default();
            command
                .split_whitespace()
                .take_while(|w| !w.contains(['<', '[', '|']))
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn wait_for(path: &Path, limit: Duration) {
    let started = Instant::now();
    while !path.is_file() {
        assert!(started.elapsed() < limit, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_command_lab_help_documents_works_against_a_running_lab() {
    let root = workspace_root().join(format!("target/lab-tests/cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("a directory of the test's own");
    let mut cli = Cli {
        root: root.clone(),
        ran: Vec::new(),
    };
    let help = match cli.run(&["help"]) {
        Value::String(s) => s,
        other => panic!("help is text: {other}"),
    };
    let mut up = cli.command(&["up"]);
    up.env("LAB_PROMOTION_SECONDS", "0.3")
        .env("LAB_LAMBDA_RETRY_SECONDS", "0.3")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let running = Running {
        child: up.spawn().expect("lab up starts"),
    };
    cli.ran.push(vec!["up".into()]);
    wait_for(&root.join(".lab/state.json"), Duration::from_secs(60));

    let state = cli.run(&["state"]);
    assert_eq!(state["datastore"]["primary"], "us-west-1");
    assert_eq!(state["record"]["points_at"], "us-west-1");

    cli.run(&["failover", "us-west-2"]);
    cli.until(&["state"], "the failover and the switch", |s| {
        s["datastore"]["primary"] == "us-west-2" && s["record"]["points_at"] == "us-west-2"
    });
    let history = cli.run(&["get", "history"]);
    assert!(history.as_array().is_some_and(|h| h.len() >= 3), "{history}");

    for mode in [
        &["link", "down"][..],
        &["link", "blackhole"],
        &["link", "degraded", "50", "0.1"],
    ] {
        cli.run(mode);
    }
    assert_eq!(cli.run(&["state"])["link"]["mode"], "degraded");
    cli.run(&["link", "up"]);

    cli.run(&["dark", "us-west-1"]);
    assert!(cli.run(&["state"])["regions"][0]["dark"] == true);
    cli.run(&["light", "us-west-1"]);
    cli.until(&["state"], "us-west-1 back as a replica", |s| {
        s["regions"][0]["dark"] == false && s["regions"][0]["role"] == "slave"
    });

    for args in [
        &["sns", "duplicate"][..],
        &["sns", "delay", "100"],
        &["sns", "drop"],
    ] {
        cli.run(args);
    }
    assert_eq!(cli.run(&["state"])["sns"]["drop"], true);
    cli.run(&["sns", "normal"]);

    let arc = cli.run(&["arc"]);
    assert_eq!(arc["controls"]["us-west-1"], "On", "{arc}");
    cli.run(&["arc", "0", "refuse"]);
    cli.run(&["arc", "us-west-2", "slow:100"]);
    let arc = cli.run(&["arc"]);
    assert_eq!(arc["endpoints"][0]["mode"], "refuse");
    assert_eq!(arc["endpoints"][1]["mode"]["slow"]["ms"], 100);
    cli.run(&["arc", "0", "ok"]);
    assert!(cli.run(&["arc", "changes"]).is_array());
    assert_eq!(cli.run(&["arc", "wait-period", "0"])["wait_period_ms"], 0);

    cli.run(&["alarms"]);
    assert_eq!(cli.run(&["alarm-delivery", "sns"])["alarm_delivery"], "sns");
    cli.run(&["alarm-delivery", "event_bridge"]);

    cli.run(&["route53", "fault", "ChangeResourceRecordSets", "throttling", "2"]);
    cli.run(&["route53", "latency", "ListResourceRecordSets", "20"]);
    cli.run(&["route53", "propagation", "100"]);
    let r53 = cli.run(&["route53"]);
    assert_eq!(r53["faults"][0]["remaining"], 2, "{r53}");
    assert_eq!(r53["latency_ms"]["ListResourceRecordSets"], 20);
    assert_eq!(r53["propagation_ms"], 100);
    cli.run(&["route53", "clear"]);
    assert_eq!(cli.run(&["route53"])["faults"], serde_json::json!([]));
    let changes = cli.run(&["route53", "changes"]);
    assert!(
        changes
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["trace"].is_string())),
        "the switch's change carries its trace: {changes}"
    );
    cli.run(&["latency", "elasticache", "10"]);
    cli.run(&["latency", "arc", "0"]);
    cli.run(&["latency", "elasticache", "0"]);

    // Each item preflight checks, broken and mended as `lab help` documents (the lab's own
    // alarm, created here as the template would, for `break alarm`).
    let endpoints: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(".lab/state.json")).expect("state.json"))
            .expect("state.json is JSON");
    let cw_endpoint = endpoints["cloudwatch"].as_str().expect("cloudwatch").to_owned();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            cloudwatch_at(&cw_endpoint, "us-west-2")
                .put_metric_alarm()
                .alarm_name("sessions-writes-failing")
                .namespace("SessionStore")
                .metric_name("WriteErrors")
                .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
                .period(60)
                .evaluation_periods(1)
                .threshold(1.0)
                .comparison_operator(
                    aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
                )
                .send()
                .await
                .expect("PutMetricAlarm")
        });
    let preflight = |cli: &mut Cli| {
        cli.run(&[
            "invoke",
            "us-west-2",
            "traffic-switch",
            "events/traffic-switch/manual-preflight.json",
        ])["ok"]["triggers"][0]["preflight"]
            .clone()
    };
    assert_eq!(preflight(&mut cli)["ready"], true, "{}", preflight(&mut cli));
    for fault in [
        &["topic", "us-west-2"][..],
        &["subscription", "us-west-2"],
        &["lag-metric"],
        &["alarm", "us-west-2", "sessions-writes-failing"],
        &["record"],
        &["arc-endpoint", "0"],
    ] {
        cli.run(&[&["break"][..], fault].concat());
        if matches!(fault[0], "topic" | "subscription" | "record") {
            assert_eq!(
                preflight(&mut cli)["ready"],
                false,
                "{fault:?} is a FAIL for the switch"
            );
        }
        cli.run(&[&["mend"][..], fault].concat());
    }
    let readiness = cli.run(&["readiness"]);
    assert_eq!(readiness["lag_paused"], false, "{readiness}");
    assert_eq!(readiness["deleted_alarms"], serde_json::json!([]), "{readiness}");
    assert_eq!(preflight(&mut cli)["ready"], true, "every item mended");
    let status = cli.run(&[
        "invoke",
        "us-west-2",
        "traffic-switch",
        "events/traffic-switch/manual-status.json",
    ]);
    assert_eq!(
        status["ok"]["triggers"][0]["status"]["writers_on_primary"], true,
        "{status}"
    );
    for what in ["requests", "invocations", "audits", "events", "publications"] {
        assert!(cli.run(&["get", what]).is_array(), "{what}");
    }
    let drill = cli.run(&["drill", "--help"]);
    assert!(drill.as_str().is_some_and(|d| d.contains("failback")), "{drill}");
    let chaos = cli.run(&["chaos", "--help"]);
    assert!(chaos.as_str().is_some_and(|c| c.contains("--seed")), "{chaos}");

    cli.run(&["stop"]);
    let mut running = running;
    let started = Instant::now();
    loop {
        if running.child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "lab stop ends lab up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !root.join(".lab/state.json").exists(),
        "stop removes the state file"
    );

    for command in documented(&help) {
        assert!(
            cli.ran.iter().any(|ran| ran.starts_with(&command)),
            "`lab {}` is documented in `lab help` but this test never ran it",
            command.join(" ")
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
