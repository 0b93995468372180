import subprocess
import sys

import pytest

from cml_cloud_manager.config import ProcessRole, SettingsError, load_settings


def test_defaults_are_local_and_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "APP_HOST", "APP_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url.startswith("sqlite+aiosqlite:///./var/")
    assert settings.redis_url == ""
    assert (settings.app_host, settings.app_port) == ("127.0.0.1", 8000)


def test_malformed_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "eighty")
    with pytest.raises(SettingsError, match="APP_PORT"):
        load_settings()


def test_unknown_database_scheme_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"DATABASE_URL: .*sqlite\+aiosqlite"):
        load_settings(database_url="mysql://x")


def test_cli_reports_bad_setting_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cml_cloud_manager", "api"],
        env={"PATH": "/usr/bin:/bin", "WORKER_HEARTBEAT_SECONDS": "-1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "WORKER_HEARTBEAT_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr


def test_roles() -> None:
    assert ProcessRole.API.serves_http and not ProcessRole.API.runs_jobs
    assert ProcessRole.WORKER.runs_jobs and not ProcessRole.WORKER.serves_http
    assert ProcessRole.ALL.runs_jobs and ProcessRole.ALL.serves_http
