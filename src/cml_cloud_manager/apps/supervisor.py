"""`cml-cloud-manager up`: api and worker as two child processes, supervised together."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from ..config import Settings
from ..storage.db import Database
from ..storage.migrate import migrate

log = logging.getLogger(__name__)


async def _migrate(settings: Settings) -> None:
    db = Database(settings, unbounded=True)  # as `cml-cloud-manager migrate`: it may rewrite a large table
    try:
        await migrate(db)
    finally:
        await db.dispose()


def up(settings: Settings, *, extra_env: dict[str, str] | None = None) -> int:
    """Start both roles; forward SIGINT/SIGTERM; if either dies, stop the other and exit non-zero."""
    env = {
        **os.environ,
        **(extra_env or {}),
        "APP_PORT": str(settings.app_port),
        "APP_HOST": settings.app_host,
    }
    env.pop("WORKER_MODE", None)
    # Migrate once here, so the two children never race to create the schema.
    asyncio.run(_migrate(settings))
    children: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
    for role in ("api", "worker"):
        # Own process group, so a terminal's Ctrl+C reaches only us and we forward exactly one SIGTERM; but our
        # session, so both children share one autogroup and the worker's lower priority (WORKER_NICE) weighs
        # against the API (in separate sessions each would get an equal share of the CPU, whatever its nice).
        proc = subprocess.Popen([sys.executable, "-m", "cml_cloud_manager", role], env=env, process_group=0)
        children[proc.pid] = (role, proc)
        log.info("started %s (pid %d)", role, proc.pid)
    base = settings.base_url()
    log.info("CML Cloud Manager is starting at %s/ (Ctrl+C stops both processes)", base)
    if settings.auth_mode == "token":
        log.info(
            "Sign in with an API token: on first start the API writes an admin token to %s "
            "(or create one: cml-cloud-manager token create --name you --role admin)",
            settings.auth_admin_token_file,
        )

    stopping = threading.Event()

    def stop_all(reason: str) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("stopping api and worker: %s", reason)
        for _, proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # A child that ignores SIGTERM past the grace period is killed, so `up` itself always ends.
        timer = threading.Timer(settings.shutdown_grace_seconds + 5, _kill_all, args=(children,))
        timer.daemon = True
        timer.start()

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        stop_all(f"{signal.Signals(sig).name} received")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    failed = False
    remaining = dict(children)
    while remaining:
        pid, status = os.wait()
        if pid not in remaining:
            continue
        role, proc = remaining.pop(pid)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if not stopping.is_set():
            failed = True
            log.error("%s exited unexpectedly with code %s", role, code)
            stop_all(f"{role} died")
        elif code not in (0, -signal.SIGTERM, -signal.SIGINT):
            failed = True
            log.error("%s exited with code %s while stopping", role, code)
        else:
            log.info("%s stopped", role)
    return 1 if failed else 0


def _kill_all(children: dict[int, tuple[str, subprocess.Popen[bytes]]]) -> None:
    for role, proc in children.values():
        if proc.returncode is None:
            log.error("%s did not stop in time; killing it", role)
            proc.kill()
