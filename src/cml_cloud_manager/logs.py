"""Logging: one format for every process, naming its role on every line."""

from __future__ import annotations

import asyncio
import logging
import sys

from .config import Settings


class CancelledReset(logging.Filter):
    """SQLAlchemy's pool logs an ERROR with a traceback when a task is cancelled (a job past its timeout, a
    shutdown) while its connection is being rolled back. Nothing is lost: the transaction never committed and the
    connection is thrown away. Say that in one line instead of a traceback that reads like a crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info, record.exc_text = (
                "a database connection was discarded: the task using it was cancelled (its transaction had not "
                "committed)",
                None,
                None,
                None,
            )
        return True


def configure(settings: Settings, role: str) -> None:
    fmt = logging.Formatter(f"%(asctime)s %(levelname)-7s [{role}] %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(settings.log_file))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(CancelledReset())  # on the handlers: a logger's filters miss its children's records
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Library chatter that would drown what the operator needs to see.
    for noisy in (
        "botocore",
        "boto3",
        "urllib3",
        "httpx",
        "httpcore",
        "aiohttp",
        "aiosqlite",
        "asyncio",
        "alembic.runtime.plugins",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
