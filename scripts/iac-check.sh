#!/usr/bin/env bash
# The template checks, offline, on template.yaml and every template in infra/:
#   cfn-lint; sam validate (the SAM translator: catches what cfn-lint lets through) and
#   sam validate --lint; samconfig.toml's parameters against the template's constraints
#   (scripts/check-samconfig.py); checkov on the templates as written and on template.yaml as
#   SAM translates it (the IAM roles, rules and subscriptions SAM generates), once per
#   deployment shape (scripts/sam-translate.py). Every finding fails the step; every checkov
#   skip is in the template with its reason, and is printed here with it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh deploy
scripts/venv.sh checkov
# sam and the translator want a Region; nothing here calls AWS.
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-west-2} SAM_CLI_TELEMETRY=0
templates=(template.yaml infra/*.yaml)

echo "-- cfn-lint ${templates[*]}"
.venv-deploy/bin/cfn-lint "${templates[@]}"
echo "cfn-lint: 0 errors, 0 warnings"

echo "-- sam validate"
.venv-deploy/bin/sam validate -t template.yaml
.venv-deploy/bin/sam validate --lint -t template.yaml

echo "-- samconfig.toml: every environment's parameters against the template"
.venv-deploy/bin/python scripts/check-samconfig.py samconfig.toml template.yaml

echo "-- checkov"
out=target/iac
rm -rf "$out"
.venv-deploy/bin/python scripts/sam-translate.py template.yaml "$out"
args=()
for f in "${templates[@]}" "$out"/*.json; do args+=(-f "$f"); done
# --skip-download: no Prisma Cloud API (no network in CI, and no account needed).
rc=0
.venv-checkov/bin/checkov --skip-download --framework cloudformation --output json \
  "${args[@]}" > "$out/checkov.json" || rc=$?
.venv-checkov/bin/python - "$out/checkov.json" <<'PY'
import collections, json, sys
reports = json.load(open(sys.argv[1]))
reports = reports if isinstance(reports, list) else [reports]
counts = collections.Counter()
skips = collections.defaultdict(set)
for report in reports:
    for kind in ("passed_checks", "failed_checks", "skipped_checks"):
        for r in report.get("results", {}).get(kind, []):
            counts[kind] += 1
            where = f"{r['file_path'].lstrip('/')}: {r['resource']}"
            if kind == "failed_checks":
                print(f"FAILED {r['check_id']} {r['check_name']}\n  {where}")
            elif kind == "skipped_checks":
                reason = r["check_result"].get("suppress_comment", "").strip()
                skips[(r["check_id"], reason)].add(r["resource"].split(".")[-1])
for (check, reason), resources in sorted(skips.items()):
    print(f"skipped {check} on {', '.join(sorted(resources))}: {reason}")
unexplained = [check for check, reason in skips if not reason]
if unexplained:
    print(f"skips without a reason: {', '.join(unexplained)}")
    sys.exit(1)
print(f"checkov: {counts['passed_checks']} passed, {counts['failed_checks']} failed, "
      f"{counts['skipped_checks']} skipped ({len(skips)} distinct skips, reasons above)")
PY
exit $rc
