"""What the processes' log says when a task is cancelled inside a database call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cml_cloud_manager import logs
from cml_cloud_manager.config import Settings


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_a_cancelled_rollback_is_one_line_not_a_traceback(tmp_path: Path, restored_logging: None) -> None:
    log_file = tmp_path / "worker.log"
    logs.configure(Settings(_env_file=None, log_file=log_file), "worker")
    pool = logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool")
    try:
        raise asyncio.CancelledError
    except asyncio.CancelledError:
        pool.error("Exception during reset or similar", exc_info=True)
    try:
        raise ConnectionResetError("the server closed the connection")
    except ConnectionResetError:
        pool.error("Exception during reset or similar", exc_info=True)

    lines = log_file.read_text().splitlines()
    assert (
        "INFO    [worker] sqlalchemy.pool.impl.AsyncAdaptedQueuePool: a database connection was discarded" in lines[0]
    )
    # Any other failure keeps its level and its traceback.
    assert "ERROR   [worker] sqlalchemy.pool.impl.AsyncAdaptedQueuePool: Exception during reset" in lines[1]
    assert lines[2] == "Traceback (most recent call last):" and "ConnectionResetError" in lines[-1]
    assert sum("Traceback" in line for line in lines) == 1
