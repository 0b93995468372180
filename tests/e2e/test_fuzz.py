"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis), as an admin."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .processes import spawn, wait_ready

pytestmark = pytest.mark.e2e
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "15")


async def test_no_server_errors_and_responses_match_the_schema(stack_env: dict[str, str], tmp_path: Path) -> None:
    # The fuzzer's own admin token comes from AUTH_TOKENS_FILE: the API cannot revoke it (409), so DELETE
    # /api/tokens/{token}, which the stateful phase feeds with the ids GET /api/tokens lists, cannot take the
    # fuzzer's credential away half-way (it did: every later operation only saw 401). A database token is there
    # for that endpoint to revoke.
    token = "fuzzer-" + secrets.token_urlsafe(32)
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"admin fuzzer {hashlib.sha256(token.encode()).hexdigest()}\n")
    env: dict[str, Any] = {**stack_env, "AUTH_MODE": "token", "AUTH_TOKENS_FILE": str(tokens_file)}
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cml_cloud_manager", "token", "create", "--name", "spare", "--role", "viewer"],
        env={**os.environ, **env},
        capture_output=True,
        check=True,
    )
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
    assert "Authentication failed" not in result.stdout, f"operations fuzzed without a credential:\n{result.stdout}"
    assert "Traceback" not in api.output()
