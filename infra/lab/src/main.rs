//! `lab`: start the local two-Region lab and drive it. `lab help` lists every command
//! ([`USAGE`]); the README's lab section documents them, and a test runs each against a lab.

use std::path::PathBuf;
use std::time::Duration;

use failover_lab::{Lab, LabConfig};
use serde_json::{Value, json};

/// Every command, one per line starting `lab `; continuation lines are indented.
const USAGE: &str = "\
lab up                         start everything; writes .lab/state.json and .lab/env; runs until
                               Ctrl-C or `lab stop`
lab stop                       stop a running lab
lab state                      datastore, record, link, Regions, as JSON
lab failover <region>          FailoverGlobalReplicationGroup to the member in <region>
lab link up|down|blackhole     set the inter-Region link
lab link degraded <delay-ms> <loss 0..1>
lab dark <region>              make a Region dark: its Valkey stops, its APIs answer 503
lab light <region>             bring a dark Region back (its Valkey rejoins as a replica)
lab sns duplicate|delay <ms>|drop|normal       SNS delivery faults
lab arc                        routing-control states and endpoint modes
lab alarms                     CloudWatch alarms and their states
lab alarm-delivery event_bridge|sns   how alarm state changes reach the functions
lab arc <0-4|region> ok|refuse|hang|error5xx|throttle|slow:<ms>   an ARC cluster endpoint's behaviour
lab arc changes                every routing-control change the cluster applied
lab arc wait-period <ms>       after a control changes, changes to it fail this long (ConflictException)
lab route53                    the writer record, armed faults, latencies, propagation delay
lab route53 changes            every change batch Route 53 applied, with its time and trace
lab route53 fault <operation> throttling|prior_request_not_complete|error5xx|hang|lost|slow:<ms> [times]
lab route53 latency <operation> <ms>     delay one operation's answers (0 removes it)
lab route53 propagation <ms>   how long a change stays PENDING
lab route53 clear              disarm every Route 53 fault and latency
lab latency elasticache|arc <ms>         delay every answer of that emulated API (0 removes it)
lab break topic|subscription <region>   what preflight checks, broken: the group's notification topic
                               inactive (ElastiCache stops publishing), the switch unsubscribed
lab break lag-metric           stop publishing the lag metric and forget it (ListMetrics lists nothing)
lab break alarm <region> <name>          delete a gate alarm (kept aside for `lab mend`)
lab break record               make the writer record an A record
lab break arc-endpoint <0-4|region>      an ARC cluster endpoint refuses connections
lab mend <item> [...]          undo `lab break` with the same arguments
lab readiness                  topics, subscriptions, lag metric and deleted alarms, as JSON
lab invoke <region> <function> <event.json>   invoke like the Lambda console
lab get requests|invocations|audits|events|publications|history
lab drill [all|primary-down|link-loss|data-plane-degraded|failback] [options]
                               a DR drill on a lab of its own; exit 0 only if every objective passes
lab chaos [options]            randomized histories with the invariants checked (`lab chaos --help`)
lab help                       this list";

fn root() -> PathBuf {
    std::env::var_os("LAB_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
}

fn control_url() -> Result<String, String> {
    let path = root().join(".lab/state.json");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e} (is the lab up?)", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    v["control"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} has no control address", path.display()))
}

fn call(method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let url = format!("{}{path}", control_url()?);
    let response = match (method, body) {
        ("GET", _) => ureq::get(&url).call(),
        (_, Some(b)) => ureq::post(&url)
            .header("content-type", "application/json")
            .send(b.to_string()),
        (_, None) => ureq::post(&url).send_empty(),
    };
    let mut response = response.map_err(|e| format!("{url}: {e}"))?;
    let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text}"))
}

fn secs(var: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(default * 1000, |s| (s * 1000.0) as u64),
    )
}

async fn up() -> Result<(), String> {
    let mut cfg = LabConfig::two_regions(&root());
    if std::env::var("LAB_THIRD_REGION").is_ok_and(|v| v == "1") {
        cfg = cfg.with_third_region("eu-west-1", "euw1");
    }
    cfg.promotion_time = secs("LAB_PROMOTION_SECONDS", 2);
    cfg.lambda_retry_delay = secs("LAB_LAMBDA_RETRY_SECONDS", 1);
    // The template's default: reconcile every minute; 0 turns it off.
    let reconcile = secs("LAB_RECONCILE_SECONDS", 60);
    cfg.reconcile_every = (!reconcile.is_zero()).then_some(reconcile);
    if let Ok(mode) = std::env::var("LAB_ROUTING_MODE") {
        cfg.routing_mode = mode;
    }
    if let Ok(dir) = std::env::var("LAB_BINARY_DIR") {
        cfg.binary_dir = PathBuf::from(dir);
    }
    let lab = Lab::start(cfg).await.map_err(|e| e.to_string())?;
    lab.write_state_files().map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&lab.endpoints).unwrap_or_default()
    );
    println!(
        "lab is up: state in .lab/state.json, shell variables in .lab/env; Ctrl-C or `lab stop` ends it"
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = lab.state.shutdown.notified() => {},
    }
    let _ = std::fs::remove_file(root().join(".lab/state.json"));
    println!("lab stopped");
    Ok(())
}

/// Runs the drill; the objectives table goes to stdout, progress to stderr.
async fn drill(args: &[String]) -> Result<Value, String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", failover_lab::drill::USAGE);
        return Ok(Value::Null);
    }
    let mut cfg = failover_lab::drill::DrillConfig::new(&root());
    if let Ok(dir) = std::env::var("LAB_BINARY_DIR") {
        cfg.binary_dir = PathBuf::from(dir);
    }
    let scenarios = cfg.apply_args(args)?;
    let outcomes = failover_lab::drill::run(&cfg, &scenarios)
        .await
        .map_err(|e| e.to_string())?;
    let reports: Vec<_> = outcomes.iter().map(|o| o.report.clone()).collect();
    println!("\n{}", failover_lab::drill::report::objectives_table(&reports));
    println!(
        "reports: {}/summary.md, per scenario report.md, report.json, timeline.svg, audits.jsonl",
        cfg.out_dir.display()
    );
    if reports.iter().all(|r| r.passed) {
        println!("every objective passed");
        Ok(Value::Null)
    } else {
        Err("some objectives failed (see the table above)".into())
    }
}

/// Runs randomized histories; a summary line per history goes to stderr, failing ones in full.
async fn chaos(args: &[String]) -> Result<Value, String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", failover_lab::chaos::USAGE);
        return Ok(Value::Null);
    }
    let mut cfg = failover_lab::chaos::ChaosConfig::new(&root());
    if let Ok(dir) = std::env::var("LAB_BINARY_DIR") {
        cfg.binary_dir = PathBuf::from(dir);
    }
    cfg.apply_args(args)?;
    eprintln!(
        "chaos: seeds {} to {} ({} steps each{})",
        cfg.seed,
        cfg.seed + u64::from(cfg.histories.saturating_sub(1)),
        cfg.steps,
        cfg.budget
            .map(|b| format!(", stopping after {} s", b.as_secs()))
            .unwrap_or_default()
    );
    let summary = failover_lab::chaos::run(&cfg).await.map_err(|e| e.to_string())?;
    let failed = summary.failed();
    let ratio = |n: usize| n * 100 / summary.results.len().max(1);
    println!(
        "chaos: {} histories in {:.1} s, {} failed ({}%); first seed {}",
        summary.results.len(),
        summary.duration_ms as f64 / 1000.0,
        failed.len(),
        ratio(failed.len()),
        summary.first_seed
    );
    if failed.is_empty() {
        Ok(Value::Null)
    } else {
        for f in &failed {
            println!("{}", f.describe());
        }
        Err(format!(
            "{} of {} histories broke an invariant (evidence in {})",
            failed.len(),
            summary.results.len(),
            cfg.out_dir.display()
        ))
    }
}

fn ctl(args: &[String]) -> Result<Value, String> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["stop"] => call("POST", "/shutdown", None),
        ["state"] => call("GET", "/state", None),
        ["failover", region] => call("POST", "/failover", Some(json!({"region": region}))),
        ["link", "degraded", delay, loss] => call(
            "POST",
            "/link",
            Some(
                json!({"mode": "degraded", "delay_ms": delay.parse::<u64>().map_err(|e| e.to_string())?,
                        "loss": loss.parse::<f64>().map_err(|e| e.to_string())?}),
            ),
        ),
        ["link", mode @ ("up" | "down" | "blackhole")] => call("POST", "/link", Some(json!({"mode": mode}))),
        ["dark", region] => call("POST", &format!("/region/{region}/dark"), None),
        ["light", region] => call("POST", &format!("/region/{region}/light"), None),
        ["sns", "duplicate"] => call("POST", "/sns", Some(json!({"duplicate": true}))),
        ["sns", "delay", ms] => call(
            "POST",
            "/sns",
            Some(json!({"delay_ms": ms.parse::<u64>().map_err(|e| e.to_string())?})),
        ),
        ["sns", "drop"] => call("POST", "/sns", Some(json!({"drop": true}))),
        ["sns", "normal"] => call("POST", "/sns", Some(json!({}))),
        ["invoke", region, function, file] => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            let event: Value = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
            call(
                "POST",
                &format!("/functions/{region}/{function}/invoke"),
                Some(event),
            )
        }
        ["arc"] => call("GET", "/arc", None),
        ["arc", "changes"] => call("GET", "/arc/changes", None),
        ["arc", "wait-period", ms] => call(
            "POST",
            "/arc/wait-period",
            Some(json!({"ms": ms.parse::<u64>().map_err(|e| e.to_string())?})),
        ),
        ["arc", endpoint, mode] => call("POST", &format!("/arc/{endpoint}/{mode}"), None),
        ["route53"] => call("GET", "/route53", None),
        ["route53", "changes"] => call("GET", "/route53/changes", None),
        ["route53", "clear"] => call("POST", "/route53/clear", None),
        ["route53", "fault", operation, fault, rest @ ..] => {
            let times = match rest {
                [] => None,
                [n] => Some(n.parse::<u32>().map_err(|e| format!("times {n}: {e}"))?),
                _ => return Err("route53 fault <operation> <fault> [times]".into()),
            };
            call(
                "POST",
                "/route53/fault",
                Some(json!({"operation": operation, "fault": fault, "times": times})),
            )
        }
        ["route53", "latency", operation, ms] => call(
            "POST",
            "/route53/latency",
            Some(json!({"operation": operation, "ms": ms.parse::<u64>().map_err(|e| e.to_string())?})),
        ),
        ["route53", "propagation", ms] => call(
            "POST",
            "/route53/propagation",
            Some(json!({"ms": ms.parse::<u64>().map_err(|e| e.to_string())?})),
        ),
        ["latency", service, ms] => call(
            "POST",
            "/latency",
            Some(json!({"service": service, "ms": ms.parse::<u64>().map_err(|e| e.to_string())?})),
        ),
        ["alarms"] => call("GET", "/alarms", None),
        ["readiness"] => call("GET", "/readiness", None),
        [verb @ ("break" | "mend"), item, rest @ ..] if rest.len() <= 2 => call(
            "POST",
            &format!("/{verb}"),
            Some(json!({"item": item, "region": rest.first(), "name": rest.get(1)})),
        ),
        ["alarm-delivery", how @ ("event_bridge" | "sns")] => {
            call("POST", "/alarm-delivery", Some(json!(how)))
        }
        [
            "get",
            what @ ("requests" | "invocations" | "audits" | "events" | "publications" | "history"),
        ] => call("GET", &format!("/{what}"), None),
        _ => Err(format!(
            "unknown command {:?}; `lab help` lists them",
            args.join(" ")
        )),
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up().await.map(|()| Value::Null),
        Some("drill") => drill(&args[1..]).await,
        Some("chaos") => chaos(&args[1..]).await,
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(Value::Null)
        }
        Some(_) => ctl(&args),
    };
    match result {
        Ok(Value::Null) => {}
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        Err(e) => {
            eprintln!("lab: {e}");
            std::process::exit(1);
        }
    }
}
