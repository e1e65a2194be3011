#!/usr/bin/env bash
# The DR drills on the local lab: `make drill` runs all three scenarios in dns mode; arguments are
# passed to `lab drill` (e.g. `scripts/drill.sh primary-down --mode arc --cache-forever`).
# Exit status 0 only if every objective passed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
echo "building the functions and the lab (the first build takes a few minutes)…" >&2
# Every target, as `make test` builds them: one feature resolution, one set of artifacts.
cargo build -q --workspace --all-targets
exec target/debug/lab drill "${@:-all}"
