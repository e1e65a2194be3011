"""Translates template.yaml into the CloudFormation that `sam deploy` would create, offline, once
per deployment shape, so checkov sees the resources SAM generates (IAM roles and their policies,
EventBridge rules, the SNS subscription, Lambda permissions) and not only the SAM shorthand.

checkov evaluates conditions with each parameter's Default, so every shape is written with the
defaults it stands for; the CodeUri is replaced by the S3 placeholder `sam package` would upload.

    python scripts/sam-translate.py template.yaml OUT_DIR    (runs in .venv-deploy)
"""

import copy
import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# name -> parameter defaults. Between them every condition of the template is true at least once.
SHAPES = {
    "dns": {},
    "arc-promoter": {
        "RoutingMode": "arc",
        "ArcEndpoints": "us-west-2=https://host-aaaaaa.us-west-2.example.aws",
        "DeployPromoter": "true",
        "AlarmTopicArn": "arn:aws:sns:us-west-2:123456789012:operators",
    },
}


class NoManagedPolicies:
    """The template names no managed policy by name; never call IAM for them."""

    def load(self):
        return {}


def main() -> None:
    source, out_dir = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    os.makedirs(out_dir, exist_ok=True)
    for shape, defaults in SHAPES.items():
        t = copy.deepcopy(template)
        for name, value in defaults.items():
            t["Parameters"][name]["Default"] = value
        for resource in t["Resources"].values():
            if resource.get("Type") == "AWS::Serverless::Function":
                resource["Properties"]["CodeUri"] = "s3://artifacts-bucket/function.zip"
        params = {name: p.get("Default") for name, p in t["Parameters"].items() if "Default" in p}
        translated = transform(t, params, NoManagedPolicies())
        path = os.path.join(out_dir, f"template.{shape}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(translated, f, indent=1)
        print(f"{path}: {len(translated['Resources'])} resources")


if __name__ == "__main__":
    main()
