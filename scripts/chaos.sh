#!/usr/bin/env bash
# Randomized histories on the lab (`lab chaos`): arguments are passed on, e.g.
#   scripts/chaos.sh --histories 50 --seed 1000
#   scripts/chaos.sh --budget-secs 180 --histories 1000      (CI's bounded batch)
# A failing history prints its seed and steps; `target/debug/lab chaos --seed S --histories 1`
# replays it. Exit status 0 only if every history kept every invariant.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
echo "building the functions and the lab (the first build takes a few minutes)…" >&2
# Every target, as `make test` builds them: one feature resolution, one set of artifacts.
cargo build -q --workspace --all-targets
exec target/debug/lab chaos "$@"
