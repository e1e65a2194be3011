#!/usr/bin/env bash
# Runs the traffic switch against moto's Route 53 and shows the writer record flip.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
# shellcheck source=scripts/moto.sh
. scripts/moto.sh
start_moto
cargo run --quiet -p failover-tests --example demo
