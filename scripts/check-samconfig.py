"""Checks samconfig.toml against template.yaml offline, the way CloudFormation would check the
parameters at deploy time: every environment's parameter_overrides (parsed by SAM CLI's own
parser) names template parameters only, gives every parameter without a default a value, and
every value passes its AllowedValues / AllowedPattern / MinValue / MaxValue and the template's
Rules. Also: each environment has a Region and a stack name, and its Region is one of Members
(the functions refuse to start otherwise).

    python scripts/check-samconfig.py samconfig.toml template.yaml    (runs in .venv-deploy)
"""

import re
import sys
import tomllib

from samcli.cli.types import CfnParameterOverridesType
from samtranslator.yaml_helper import yaml_parse


def evaluate(node, values):
    """The intrinsic functions the template's Rules use."""
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            return values[arg]
        if fn == "Fn::Equals":
            a, b = (evaluate(x, values) for x in arg)
            return a == b
        if fn == "Fn::Not":
            return not evaluate(arg[0], values)
        if fn == "Fn::And":
            return all(evaluate(x, values) for x in arg)
        if fn == "Fn::Or":
            return any(evaluate(x, values) for x in arg)
        if fn == "Fn::Select":
            return evaluate(arg[1], values)[int(arg[0])]
        if fn == "Fn::Join":
            return arg[0].join(evaluate(arg[1], values))
        raise ValueError(f"unsupported function {fn} in Rules")
    if isinstance(node, list):
        return [evaluate(x, values) for x in node]
    return node


def check_value(name, spec, raw):
    problems = []
    kind = spec.get("Type", "String")
    items = [s.strip() for s in raw.split(",")] if kind == "CommaDelimitedList" else [raw]
    allowed = spec.get("AllowedValues")
    if allowed is not None and raw not in [str(a) for a in allowed]:
        problems.append(f"{name}={raw!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None:
        for item in items:
            if not re.fullmatch(pattern, item):
                problems.append(f"{name}={item!r} does not match {pattern}")
    if kind == "Number":
        try:
            number = float(raw)
        except ValueError:
            return problems + [f"{name}={raw!r} is not a number"]
        if "MinValue" in spec and number < float(spec["MinValue"]):
            problems.append(f"{name}={raw} is below {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            problems.append(f"{name}={raw} is above {spec['MaxValue']}")
    return problems


def main() -> None:
    config_path, template_path = sys.argv[1], sys.argv[2]
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    with open(template_path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    params = template["Parameters"]
    all_failures = []
    envs = [e for e in config if e not in ("version", "default")]
    for env in envs:
        failures = []
        sections = config[env]
        merged = {}
        for command in ("global", "deploy"):
            merged.update(sections.get(command, {}).get("parameters", {}))
        where = f"{config_path} [{env}]"
        for key in ("region", "stack_name", "parameter_overrides"):
            if key not in merged:
                failures.append(f"{where}: no {key}")
        overrides = CfnParameterOverridesType().convert(merged.get("parameter_overrides", []), None, None)
        values = {}
        for name, spec in params.items():
            if "Default" in spec:
                values[name] = str(spec["Default"])
        for name, value in overrides.items():
            if name not in params:
                failures.append(f"{where}: {name} is not a parameter of {template_path}")
                continue
            values[name] = value
            failures += [f"{where}: {p}" for p in check_value(name, params[name], value)]
        for name in params:
            if name not in values:
                failures.append(f"{where}: {name} has no default and no value")
        if failures:
            all_failures += failures
            continue
        typed = {
            name: [s.strip() for s in v.split(",")] if params[name].get("Type") == "CommaDelimitedList" else v
            for name, v in values.items()
        }
        for rule_name, rule in template.get("Rules", {}).items():
            if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], typed):
                continue
            for assertion in rule["Assertions"]:
                if not evaluate(assertion["Assert"], typed):
                    failures.append(f"{where}: rule {rule_name}: {assertion['AssertDescription']}")
        regions = [m.split(":")[0] for m in values["Members"].split(",")]
        if merged.get("region") not in regions:
            failures.append(f"{where}: region {merged.get('region')} is not one of Members ({', '.join(regions)})")
        all_failures += failures
        if not failures:
            print(f"{where}: {merged['region']}, stack {merged['stack_name']}, "
                  f"{len(overrides)} overrides, DeployPromoter={values['DeployPromoter']}, "
                  f"RoutingMode={values['RoutingMode']}: ok")
    if not envs:
        all_failures.append(f"{config_path}: no environment besides default")
    for failure in all_failures:
        print(failure)
    sys.exit(1 if all_failures else 0)


if __name__ == "__main__":
    main()
