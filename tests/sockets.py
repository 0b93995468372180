"""Stalled SSE clients on real sockets, and the kernel's view of the server's sockets (Linux `/proc`)."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# /proc/net/tcp's state column (include/net/tcp_states.h).
STATES = {
    0x01: "ESTABLISHED",
    0x02: "SYN_SENT",
    0x03: "SYN_RECV",
    0x04: "FIN_WAIT1",
    0x05: "FIN_WAIT2",
    0x06: "TIME_WAIT",
    0x07: "CLOSE",
    0x08: "CLOSE_WAIT",
    0x09: "LAST_ACK",
    0x0A: "LISTEN",
    0x0B: "CLOSING",
}


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str
    send_queue: int  # bytes written and not yet acknowledged by the peer: kernel memory the socket holds
    inode: int  # 0 once no process holds the socket (orphaned, e.g. FIN_WAIT1 after close())


def tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket of this network namespace, orphans included."""
    found = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as table:
            next(table)
            for line in table:
                fields = line.split()
                found.append(
                    TcpSocket(
                        local_port=int(fields[1].rsplit(":", 1)[1], 16),
                        remote_port=int(fields[2].rsplit(":", 1)[1], 16),
                        state=STATES.get(int(fields[3], 16), fields[3]),
                        send_queue=int(fields[4].split(":")[0], 16),
                        inode=int(fields[9]),
                    )
                )
    return found


def server_sockets(server_port: int, client_ports: set[int]) -> list[TcpSocket]:
    """The server's ends of these clients' connections, in whatever state the kernel still keeps them."""
    return [s for s in tcp_sockets() if s.local_port == server_port and s.remote_port in client_ports]


def socket_inodes(pid: int) -> set[int]:
    """The sockets whose descriptors `pid` holds (its database files are left out: SQLite opens its WAL file
    per pooled connection, lazily)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed while listing
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def connections_held(pid: int, server_port: int) -> int:
    """Accepted connections on `server_port` whose descriptor `pid` still holds (the listener not counted)."""
    held = socket_inodes(pid)
    return sum(1 for s in tcp_sockets() if s.local_port == server_port and s.state != "LISTEN" and s.inode in held)


async def stalled_stream(
    port: int, *, until: bytes = b"event: snapshot", path: str = "/api/events/stream"
) -> socket.socket:
    """An SSE client that reads up to `until`, then never reads again. Its receive buffer is set small before
    connecting, so the window it advertises stays small and the server's writes pile up on the server's side."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        seen = b""
        async with asyncio.timeout(10):
            while until not in seen:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    raise AssertionError(f"stream ended before {until!r}: {seen[-500:]!r}")
                seen += chunk
    except BaseException:
        sock.close()
        raise
    return sock


async def settled(read: Callable[[], T | Awaitable[T]], done: Callable[[T], bool], timeout: float = 2) -> T:
    """Poll `read` until `done` holds or `timeout` passes; returns the last value. For states nothing announces:
    the kernel freeing a socket, a counter on /metrics."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = read()
        if inspect.isawaitable(value):
            value = await value
        if done(value) or loop.time() >= deadline:
            return value
        await asyncio.sleep(0.05)


async def wait_gone(server_port: int, client_ports: set[int], timeout: float = 2) -> list[TcpSocket]:
    """The server's ends of these connections still in the kernel after at most `timeout`."""
    return await settled(lambda: server_sockets(server_port, client_ports), lambda left: not left, timeout)


def describe(sockets: list[TcpSocket]) -> str:
    queued = sum(s.send_queue for s in sockets)
    states = sorted({s.state for s in sockets})
    return f"{len(sockets)} server-side sockets ({', '.join(states)}) holding {queued / 1e6:.2f} MB in the kernel"
