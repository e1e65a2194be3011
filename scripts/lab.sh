#!/usr/bin/env bash
# Starts the local two-Region lab in the foreground (Ctrl-C or `target/debug/lab stop` ends it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
# Every target, as `make test` builds them: one feature resolution, one set of artifacts.
cargo build -q --workspace --all-targets
exec target/debug/lab up
