#!/usr/bin/env bash
# Starts the local two-Region lab in the foreground (Ctrl-C or `target/debug/lab stop` ends it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
cargo build -q -p traffic-switch -p promoter -p failover-lab
exec target/debug/lab up
