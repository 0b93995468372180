"""Running the API under uvicorn with our own signal handling, so SSE streams end before uvicorn waits."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Generator

import uvicorn
import uvloop
from fastapi import FastAPI

from ..config import ProcessRole, Settings
from .api import create_app

log = logging.getLogger(__name__)


class ApiServer(uvicorn.Server):
    """uvicorn waits for open connections before running the app's shutdown; SSE connections never end by
    themselves, so on the first signal we close the streams (with a shutdown event) before uvicorn waits."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self._closing: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self.should_exit:
            log.warning("second %s: exiting now", signal.Signals(sig).name)
            self.force_exit = True
            return
        log.info("%s received: closing event streams and shutting down", signal.Signals(sig).name)
        self.should_exit = True
        hub = getattr(self.app.state, "hub", None)
        if hub is not None:
            self._closing = asyncio.ensure_future(hub.shutdown())


def serve_api(settings: Settings, role: ProcessRole) -> None:
    app = create_app(role, settings)
    config = uvicorn.Config(
        app,
        host=settings.app_host,
        port=settings.app_port,
        log_config=None,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    # uvicorn picks uvloop only when it owns the loop; serving ourselves, we pick it (~7% less CPU per request).
    uvloop.run(ApiServer(config, app).serve())
    # The process exits next. Frozen, the heap is not walked once more by the interpreter's last collection
    # (`create_app`'s lifespan unfroze it): SIGTERM to exit with 10 stalled SSE clients took 1.7-2.5 s, now 1.1 s.
    gc.freeze()
