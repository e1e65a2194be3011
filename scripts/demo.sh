#!/usr/bin/env bash
# A Global Datastore failover in the local two-Region lab, end to end (about ten seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
# Every target, as `make test` builds them: one feature resolution, one set of artifacts.
cargo build -q --workspace --all-targets
cargo run -q -p failover-tests --example demo
