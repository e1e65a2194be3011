#!/usr/bin/env bash
# A Global Datastore failover in the local two-Region lab, end to end (about ten seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
cargo build -q -p traffic-switch
cargo run -q -p failover-tests --example demo
