"""SSE load generator: N raw HTTP/1.1 SSE connections in one process, driven over stdin/stdout.

  python -m bench.sse_clients HOST PORT N [--bind 127.0.0.11] [--batch 50]

Prints `{"connected": n, "failed": {...}}` once every connection has its `connected` event, then answers
commands, one JSON line each: `report` (deliveries, latencies and first/last receipt times since the last
report, connections still open), `latencies on|off` (record each delivery's latency, or only count), `quit`.
A delivery's latency is its receipt time minus the `bench_t` stamp the emitter put in the event before commit.

Each connection is a bare asyncio Protocol scanning whatever arrives with one regular expression: no stream
objects, no per-line parsing. The generator must stay far cheaper than the server it measures while thousands
of clients receive tens of thousands of events per second. Each generator process binds its own loopback
source address, so every process has its own range of ephemeral ports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import cast

from .common import raise_nofile, run_fast

STAMP = re.compile(rb'"bench_t":([0-9.]+)')
CONNECTED = b"event: connected"


@dataclass
class Tally:
    deliveries: int = 0
    latencies: list[float] = field(default_factory=list)
    record: bool = True
    first: float = 0.0
    last: float = 0.0
    open: int = 0

    def take(self) -> dict[str, object]:
        out = {
            "deliveries": self.deliveries,
            "latencies": self.latencies,
            "first": self.first,
            "last": self.last,
            "open": self.open,
        }
        self.deliveries, self.latencies, self.first, self.last = 0, [], 0.0, 0.0
        return out


class SseClient(asyncio.Protocol):
    def __init__(self, request: bytes, tally: Tally, ready: asyncio.Future[None]) -> None:
        self.request, self.tally, self.ready = request, tally, ready
        self.transport: asyncio.Transport | None = None
        self.head = b""  # everything up to the `connected` event
        self.carry = b""  # an incomplete frame left over from the last read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self.head += data
            if not self.head.startswith(b"HTTP/1.1 200") and b"\r\n" in self.head:
                self.ready.set_exception(ConnectionError(self.head.split(b"\r\n", 1)[0].decode(errors="replace")))
                return
            at = self.head.find(CONNECTED)
            if at < 0:
                return
            # Registered with the server's relay from here on; the rest of the `connected` frame holds no stamp.
            self.tally.open += 1
            self.ready.set_result(None)
            data, self.head = self.head[at + len(CONNECTED) :], b""
        now = time.time()
        data = self.carry + data
        end = data.rfind(b"\n\n")
        if end < 0:
            self.carry = data
            return
        complete, self.carry = data[: end + 2], data[end + 2 :]
        tally = self.tally
        if tally.record:
            stamps = STAMP.findall(complete)
            tally.latencies.extend(now - float(stamp) for stamp in stamps)
            count = len(stamps)
        else:
            count = complete.count(b'"bench_t":')
        if count:
            tally.deliveries += count
            tally.first = tally.first or now
            tally.last = now

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ready.done() and self.ready.exception() is None:
            self.tally.open -= 1
        elif not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before the connected event"))


async def connect(args: argparse.Namespace, tally: Tally) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    request = f"GET /api/events/stream HTTP/1.1\r\nHost: {args.host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    transport, _ = await loop.create_connection(
        lambda: SseClient(request, tally, ready),
        args.host,
        args.port,
        local_addr=(args.bind, 0) if args.bind else None,
    )
    try:
        await asyncio.wait_for(ready, 60)
    except BaseException:
        transport.close()
        raise
    return transport


async def main(args: argparse.Namespace) -> None:
    tally = Tally()
    transports: list[asyncio.Transport] = []
    failed: dict[str, int] = {}
    # A batch at a time: thousands of simultaneous handshakes would overflow the server's accept queue and
    # measure SYN retries instead of the server.
    for start in range(0, args.n, args.batch):
        results = await asyncio.gather(
            *(connect(args, tally) for _ in range(min(args.batch, args.n - start))), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                failed[type(result).__name__] = failed.get(type(result).__name__, 0) + 1
            else:
                transports.append(result)
    print(json.dumps({"connected": len(transports), "failed": failed}), flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while command := (await stdin.readline()).strip():
        if command == b"report":
            print(json.dumps(tally.take()), flush=True)
        elif command.startswith(b"latencies "):
            tally.record = command.endswith(b"on")
        elif command == b"quit":
            break
    for transport in transports:
        with contextlib.suppress(Exception):
            transport.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("n", type=int)
    parser.add_argument("--bind", help="local source address, e.g. 127.0.0.11")
    parser.add_argument("--batch", type=int, default=50, help="connections opened at once (default 50)")
    args = parser.parse_args()
    raise_nofile()
    gc.disable()  # a collection pause here would show up as event latency
    run_fast(main(args))


if __name__ == "__main__":
    cli()
