"""`cml-cloud-manager up --sandbox`: emulator + simulator + demo fleet, then api + worker against them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..apps.supervisor import up
from ..config import Settings, load_settings
from .seed import AMI_NAME, REGION, MetricsFeeder, seed_fleet
from .services import aws_env, start_cml_simulator, start_moto

log = logging.getLogger(__name__)
SANDBOX_DB = Path("var/sandbox.db")


def sandbox_env(aws_url: str, cml_url: str) -> dict[str, str]:
    """Settings that point the app at the sandbox; anything set in the environment still wins."""
    defaults = {
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_REGIONS": REGION,
        "CML_URL_TEMPLATE": f"{cml_url}/hosts/{{instance_id}}",
        "CML_USERNAME": "admin",
        "CML_PASSWORD": "admin",
        "CML_VERIFY_TLS": "false",
        "CML_AMI_NAME_PATTERN": "cml2-*",
        "CML_AMI_OWNERS": "self",
        "AUTO_IMPORT_ENABLED": "true",
        "AUTO_IMPORT_INTERVAL": "20",
        "WORKER_METRICS_INTERVAL": "20",
        "LABS_REFRESH_INTERVAL": "60",
        "IDLE_DETECTION_INTERVAL": "120",
        # Absolute: `sandbox aws|all` print it for processes started from other shells.
        "DATABASE_URL": f"sqlite+aiosqlite:///{SANDBOX_DB.resolve()}",
    }
    return {**defaults, **aws_env(), **{k: v for k, v in os.environ.items() if k in defaults}}


def reset_sandbox_database() -> None:
    """The emulator starts empty every time, so the demo database does too (unless DATABASE_URL names another)."""
    if "DATABASE_URL" not in os.environ:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SANDBOX_DB}{suffix}").unlink(missing_ok=True)


def run_sandbox(settings: Settings) -> int:
    log_dir = Path("var/sandbox")
    log_dir.mkdir(parents=True, exist_ok=True)
    reset_sandbox_database()
    log.info("sandbox: starting the AWS emulator and the CML simulator (logs in %s/)", log_dir)
    aws = start_moto(log_dir)
    try:
        cml = start_cml_simulator(log_dir)
    except Exception:
        aws.stop()
        raise
    try:
        instance_ids = seed_fleet(aws.url)
        feeder = MetricsFeeder(aws.url, instance_ids)
        feeder.start()
        env = sandbox_env(aws.url, cml.url)
        log.info("sandbox: AWS emulator %s, CML simulator %s (user admin / admin)", aws.url, cml.url)
        log.info(
            "sandbox: auto-import will find the %d instances from AMI %s within seconds", len(instance_ids), AMI_NAME
        )
        app_settings = load_settings(**{"database_url": env["DATABASE_URL"], "app_port": settings.app_port})
        code = up(app_settings, extra_env=env)
        feeder.stopped.set()
        return code
    finally:
        cml.stop()
        aws.stop()
