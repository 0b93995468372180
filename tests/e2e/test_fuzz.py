"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis), as an admin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .processes import spawn, wait_ready

pytestmark = pytest.mark.e2e
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "15")


async def test_no_server_errors_and_responses_match_the_schema(stack_env: dict[str, str], tmp_path: Path) -> None:
    env: dict[str, Any] = {**stack_env, "AUTH_MODE": "token", "AUTH_ADMIN_TOKEN_FILE": str(tmp_path / "admin-token")}
    created = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cml_cloud_manager", "token", "create", "--name", "fuzzer", "--role", "admin"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    token = created.stdout.strip()
    api = spawn("api", {**env, "LOGIN_ATTEMPTS_PER_MINUTE": "100000"}, tmp_path)
    try:
        await wait_ready(api)
        result = await asyncio.to_thread(
            subprocess.run,
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{api.url}/api/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance",
                "--exclude-path",
                "/api/events/stream",
                "--max-examples",
                EXAMPLES,
                "--generation-deterministic",
                "--request-timeout",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,  # schemathesis keeps a cache in its working directory
        )
    finally:
        api.stop()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Traceback" not in api.output()
