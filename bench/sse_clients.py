"""Load generator for the SSE benchmark: N raw HTTP/1.1 SSE connections in one process.

Prints one JSON line per report: latencies (receive time minus the `bench_t` stamp in each event) and counts.
Raw asyncio streams, not an HTTP client library, so the generator itself stays cheap at thousands of clients.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

STAMP = re.compile(rb'"bench_t":([0-9.]+)')


async def client(host: str, port: int, latencies: list[float], counts: list[int], index: int, ready: asyncio.Event,
                 connected: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/events/stream HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    connected[0] += 1
    if connected[0] == len(counts):
        ready.set()
    while line := await reader.readline():
        if line.startswith(b"data:") and (match := STAMP.search(line)):
            latencies.append(time.time() - float(match.group(1)))
            counts[index] += 1


async def main(host: str, port: int, n: int) -> None:
    latencies: list[float] = []
    counts = [0] * n
    connected = [0]
    ready = asyncio.Event()
    tasks = [asyncio.create_task(client(host, port, latencies, counts, i, ready, connected)) for i in range(n)]
    await ready.wait()
    print(json.dumps({"connected": n}), flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while command := (await stdin.readline()).strip():
        if command == b"report":
            print(json.dumps({"latencies": latencies, "counts": counts}), flush=True)
            latencies.clear()
            counts[:] = [0] * n
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
