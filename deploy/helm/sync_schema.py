"""Rewrite the setting names that values.schema.json accepts from cml_cloud_manager.config.Settings.

Run after adding or removing a setting (tests/deploy/test_helm.py fails until you do):

    .venv/bin/python deploy/helm/sync_schema.py
"""

from __future__ import annotations

import json
from pathlib import Path

from cml_cloud_manager.config import Settings

SCHEMA = Path(__file__).parent / "cml-cloud-manager" / "values.schema.json"
# Set by the chart's templates for the container they run in; not accepted in `settings`.
CHART_MANAGED = {
    "WORKER_MODE",
    "APP_HOST",
    "APP_PORT",
    "WORKER_HEALTH_HOST",
    "AUTH_ADMIN_TOKEN_FILE",
    "FORWARDED_ALLOW_IPS",  # from `forwardedAllowIps`, required with the ingress
}
# Read by boto3/botocore, accepted as Secret-backed variables besides the settings.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CA_BUNDLE",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
}


def main() -> None:
    schema = json.loads(SCHEMA.read_text())
    settings = sorted(name.upper() for name in Settings.model_fields if name.upper() not in CHART_MANAGED)
    schema["properties"]["settings"]["propertyNames"]["enum"] = settings
    schema["properties"]["secretEnv"]["propertyNames"]["enum"] = sorted(set(settings) | AWS_ENV)
    SCHEMA.write_text(json.dumps(schema, indent=2) + "\n")
    print(f"{SCHEMA}: {len(settings)} settings")


if __name__ == "__main__":
    main()
