# The front door: every task the README mentions.
.PHONY: setup test lint fmt demo build check

setup:            ## install the Python tools (moto, cfn-lint) into .venv
	scripts/venv.sh

test:             ## every test, with moto started and stopped on loopback
	scripts/test.sh

lint:             ## formatting, clippy and cfn-lint, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/venv.sh
	.venv/bin/cfn-lint template.yaml

fmt:
	cargo fmt --all

demo:             ## run the traffic switch against moto's Route 53 and watch the record flip
	scripts/demo.sh

build:            ## Lambda zips (needs cargo-lambda; see README)
	cargo lambda build --release --arm64 --output-format zip

check: lint test
