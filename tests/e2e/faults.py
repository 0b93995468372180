"""Servers and networks that misbehave when a test says so: a Redis killed (connections refused) or stopped with
SIGSTOP (connections accepted by the kernel, never answered); a listener that reads and never replies; a
PostgreSQL cluster of the test's own, stopped cleanly or killed with SIGKILL; and a TCP proxy that can be switched
to a blackhole (connections hang instead of being refused)."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from .processes import free_port


class PrivateRedis:
    """A Redis server of this test's own, so it can be killed, stopped and restarted without touching anyone
    else's."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the kernel still completes connections, the server answers nothing (a hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class SilentListener:
    """Accepts connections and reads whatever arrives, never answering: Redis as a blackholed network or a
    wedged server shows it. Runs on its own thread, so it keeps accepting whatever the test's event loop does."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.received = 0
        self._open: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-listener", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._open.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self.sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes its reader thread, which closes it


def pg_bin(name: str) -> str:
    """A PostgreSQL server program (initdb, pg_ctl) from the installed packages; the test fails without them."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise AssertionError(f"PostgreSQL server binaries ({name}) are not installed: apt-get install postgresql")
    return found[-1]


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own on a free port, so it can be stopped, killed and started without
    touching anyone else's (the machine's shared server on 5432 is never signalled)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.data = directory / "pgdata"
        self.directory = directory

    def _run(self, *argv: str) -> None:
        # PostgreSQL refuses to run as root; run it as the `postgres` user when we are root.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *argv], capture_output=True, timeout=120)
        if done.returncode != 0:
            log = self.directory / "pg.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{argv[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')}{tail}")

    def init(self) -> None:
        os.chmod(self.directory, 0o777)
        self._run(pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run(
            pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l", str(self.directory / "pg.log"), "start"
        )

    def stop(self) -> None:
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return self.postmaster_pid() is not None

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (the first line of postmaster.pid), or None when none runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, ValueError):
            return None
        return None if state in ("Z", "X") else pid  # a zombie waits for its reaper: it is not running

    def backends(self) -> list[int]:
        """This cluster's processes (each runs in its data directory). Its postmaster's children outlive a SIGKILL
        of the postmaster for a moment, until they notice it is gone, and keep its shared memory in use meanwhile."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{entry}/cwd").resolve() == self.data.resolve():
                        found.append(int(entry))
        return found

    def kill9(self) -> int:
        """SIGKILL the postmaster, as a crash or the OOM killer would: no shutdown, no checkpoint. Returns its pid."""
        pid = self.postmaster_pid()
        assert pid is not None, "the private PostgreSQL is not running"
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_gone(self, killed: int, timeout: float = 30) -> None:
        """Until the killed postmaster and its backends have all exited and been reaped, so the cluster can start
        again (and recover from its WAL): PostgreSQL refuses to start while the pid in its lock file exists, even
        as a zombie waiting for init to reap it."""
        deadline = time.monotonic() + timeout
        while self.backends() or Path(f"/proc/{killed}").exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL processes {self.backends()} outlived their postmaster {killed}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"


class Blackhole:
    """A TCP proxy in front of a server that the test can switch to a blackhole: while it is on, connections are
    accepted but no byte moves in either direction, so clients hang (as behind a dropped route or a firewall that
    drops packets) instead of being refused; when it is lifted, everything held moves on, as after the network
    heals, and new connections reach the server again. Threads, not the test's event loop, do the forwarding."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.accepted = 0
        self.held_bytes = 0  # bytes that arrived while blackholed (delivered once lifted)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="blackhole-accept", daemon=True)
        self._thread.start()

    def url(self, template: str) -> str:
        """`template` with `{port}` replaced by the proxy's port, e.g. a DATABASE_URL or REDIS_URL."""
        return template.replace("{port}", str(self.port))

    def on(self) -> None:
        self.flowing.clear()

    def lift(self) -> None:
        self.flowing.set()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._closed.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._track(client)
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _wait_flowing(self) -> bool:
        while not self.flowing.wait(0.1):
            if self._closed.is_set():
                return False
        return not self._closed.is_set()

    def _connect(self, client: socket.socket) -> None:
        # A connection made during the blackhole reaches the server only once it lifts (a SYN retransmitted).
        if not self._wait_flowing():
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:  # the server is down: reset the client, as close as a proxy gets to a refused connection
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        server.settimeout(None)
        self._track(server)
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Bytes one way. While blackholed, what arrives waits here, and so does a close or a reset: the other
        side learns of it only once the blackhole lifts, as TCP's retransmissions would tell it."""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not self.flowing.is_set():
                self.held_bytes += len(data)
            if not data or not self._wait_flowing():
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):  # one side closed or reset: so does the other, as TCP would end-to-end
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self.sock.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
