#!/usr/bin/env bash
# The test command: installs the local stand-ins, starts them on loopback, runs every test,
# stops them. Works on a fresh machine with Rust and Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
# shellcheck source=scripts/moto.sh
. scripts/moto.sh
start_moto
echo "moto: $MOTO_ENDPOINT"
# The lab runs the real function binaries: build them before the tests start labs. Building every
# target in one go resolves features once (dev-dependencies included), so the test build below and
# `make drill` reuse these artifacts instead of compiling the SDKs a second time.
cargo build --workspace --all-targets
cargo test --workspace --all-targets "$@"
