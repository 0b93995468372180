"""Open-loop HTTP load generator: requests at a fixed rate, each timed from when it was *due*, not when sent.

  python -m bench.loadgen --url http://127.0.0.1:8000 --rate 500 --seconds 30 --ids ids.txt --out result.json \
      [--token-file var/admin-token]

A closed-loop client (send, wait, send) slows down with the server and so hides its stalls; here request i is
due at t0 + i/rate whatever happened before, and its latency runs from that instant to the last byte of the
answer, so time spent queued behind a stalled server counts. Raw HTTP/1.1 on kept-alive asyncio connections
(uvloop when present) keeps the generator cheap; `lag` records how late its own loop fired each request, which
says whether the generator itself kept up. With `--token-file` every request carries that bearer token. The
mix: every `--list-every`-th request lists 100 workers (`GET /api/workers?limit=100`), the others fetch one
worker by id, cycling through `--ids`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import run_fast

KINDS = ("list", "get")
IDLE_REUSE_SECONDS = 3.0  # below uvicorn's 5 s keep-alive: never reuse a socket the server is about to close


class Pool:
    """Kept-alive connections, most recently used first so few stay warm; opens more when all are busy."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.open = 0
        self.peak = 0
        self.freed = asyncio.Condition()

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            while self.idle:
                reader, writer, used = self.idle.pop()
                if time.monotonic() - used < IDLE_REUSE_SECONDS:
                    return reader, writer
                self.discard(writer)
            if self.open < self.limit:
                self.open += 1
                self.peak = max(self.peak, self.open)
                try:
                    return await asyncio.open_connection(self.host, self.port)
                except OSError:
                    self.open -= 1
                    raise
            async with self.freed:
                await self.freed.wait()

    async def put(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.idle.append((reader, writer, time.monotonic()))
        async with self.freed:
            self.freed.notify()

    def discard(self, writer: asyncio.StreamWriter) -> None:
        self.open -= 1
        writer.close()


@dataclass
class Results:
    # Per request: due offset (s from t0), latency (s), HTTP status (0 = transport error/timeout), kind, lag (s).
    records: list[tuple[float, float, int, int, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


async def exchange(pool: Pool, request: bytes, timeout: float) -> int:
    """One request on a pooled connection; returns the status. A kept-alive socket the server closed under us
    is retried once on a new one (that is the client's bookkeeping, not a server error)."""
    for attempt in (1, 2):
        reader, writer = await pool.get()
        try:
            async with asyncio.timeout(timeout):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                lower = head.lower()
                start = lower.find(b"content-length:")
                if start < 0:
                    raise ValueError("answer without Content-Length")
                length = int(lower[start + 15 : lower.find(b"\r\n", start)])
                await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            pool.discard(writer)
            if attempt == 2 or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            continue
        except BaseException:
            pool.discard(writer)
            raise
        if b"connection: close" in lower:
            pool.discard(writer)
        else:
            await pool.put(reader, writer)
        return status
    raise AssertionError("unreachable")


async def run(args: argparse.Namespace, ids: list[str], token: str) -> dict[str, object]:
    host, port = args.url.removeprefix("http://").split(":")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    list_request = f"GET /api/workers?limit=100 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
    get_requests = [f"GET /api/workers/{i} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode() for i in ids]
    pool = Pool(host, int(port), args.connections)
    # Warm connections before the clock starts, so the first second is not all connection setup.
    warm = [await pool.get() for _ in range(min(16, args.connections))]
    for reader, writer in warm:
        await pool.put(reader, writer)
    results = Results()
    inflight: set[asyncio.Task[None]] = set()

    async def one(index: int, due: float, lag: float) -> None:
        kind = 0 if index % args.list_every == 0 else 1
        request = list_request if kind == 0 else get_requests[index % len(ids)]
        try:
            status = await exchange(pool, request, args.timeout)
        except Exception as exc:  # every failure is a data point, never a crash of the generator
            status = 0
            name = type(exc).__name__
            results.errors[name] = results.errors.get(name, 0) + 1
        results.records.append((due - t0, time.perf_counter() - due, status, kind, lag))

    total = int(args.rate * args.seconds)
    t0 = time.perf_counter() + 0.05
    t0_wall = time.time() + (t0 - time.perf_counter())
    for index in range(total):
        due = t0 + index / args.rate
        # The loop's timers have millisecond resolution and may fire a little early: never send before due.
        while (delay := due - time.perf_counter()) > 0:  # noqa: ASYNC110 - a deadline, not a condition
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due, time.perf_counter() - due))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    if inflight:
        await asyncio.wait(inflight, timeout=args.timeout + 1)
    for reader, writer, _ in pool.idle:
        with contextlib.suppress(Exception):
            writer.close()
        del reader
    return {
        "t0_wall": t0_wall,
        "rate": args.rate,
        "seconds": args.seconds,
        "list_every": args.list_every,
        "records": sorted(results.records),
        "errors": results.errors,
        "peak_connections": pool.peak,
        "unfinished": total - len(results.records),
    }


def steady() -> None:
    """No cyclic garbage collection pauses of the generator's own (this short-lived process only appends
    tuples). Its CPU priority stays the normal one, as a client's would: what the server's neighbours cost it
    shows in `lag`."""
    gc.disable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--ids", required=True, help="file of worker ids, whitespace-separated")
    parser.add_argument("--list-every", type=int, default=10, help="every Nth request is the list (default 10)")
    parser.add_argument("--connections", type=int, default=512, help="most connections open at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="a request slower than this is an error")
    parser.add_argument("--token-file", help="file holding a bearer token sent with every request")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    steady()
    ids = Path(args.ids).read_text().split()
    token = Path(args.token_file).read_text().strip() if args.token_file else ""
    Path(args.out).write_text(json.dumps(run_fast(run(args, ids, token))))


if __name__ == "__main__":
    main()
