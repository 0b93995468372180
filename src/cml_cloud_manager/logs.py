"""Logging: one format for every process, naming its role on every line."""

from __future__ import annotations

import logging
import sys

from .config import Settings


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
