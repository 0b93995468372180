"""Starting the measured app processes (pinned, with raised limits) and sampling CPU of any process over time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from .common import raise_nofile, taskset_prefix

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# What the SSE and jobs sections' processes get: no access log or chatter competing with requests, no login. The
# separation section runs the product's defaults instead.
QUIET = {"ACCESS_LOG": "false", "LOG_LEVEL": "WARNING", "AUTH_MODE": "none", "APP_HOST": "127.0.0.1"}


def _raise_limits() -> None:
    """Runs in the child before exec (limits survive exec): room for 10,000+ sockets."""
    raise_nofile()


@dataclass
class AppProcess:
    """One `cml-cloud-manager <role>` process; its output goes to a log file, never a pipe that could fill."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @classmethod
    def start(
        cls,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_dir: Path,
        *,
        cpu: int | None = None,
        port: int | None = None,
        quiet: bool = True,
        own_session: bool = False,
    ) -> AppProcess:
        """`quiet` adds QUIET to `env` (else the product's defaults apply); `own_session` starts it as from a
        terminal of its own: a session, hence (with autogroups) a CPU share, apart from this process's."""
        log = log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*taskset_prefix(cpu), sys.executable, "-m", "cml_cloud_manager", *args],
                env={**os.environ, **(QUIET if quiet else {}), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_raise_limits,
                start_new_session=own_session,
            )
        return cls(name, proc, log, port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until `/api/health` answers at all (it may say `degraded` while no worker is alive yet)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # 503 "degraded" is an answer: the API is up
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer within {timeout:.0f}s; see {self.log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def children(pid: int) -> dict[int, list[str]]:
    """The processes whose parent is `pid`, with their command lines."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError, IndexError):
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
                if parent == pid:
                    with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                        found[int(entry)] = [arg.decode() for arg in cmdline.read().split(b"\0") if arg]
    return found


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return int(stat.read().rsplit(b")", 1)[1].split()[16])


def cpu_table() -> dict[int, tuple[str, float]]:
    """Every process's command name and CPU seconds so far (kernel threads included)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    raw = stat.read()
                name = raw[raw.index(b"(") + 1 : raw.rindex(b")")].decode(errors="replace")
                fields = raw.rsplit(b")", 1)[1].split()
                table[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def busiest_others(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float, ours: set[int]
) -> list[tuple[str, float]]:
    """CPU used between two `cpu_table` readings by processes not in `ours`, by command name, in percent of one
    core over `seconds`, busiest first. Processes that started in between count from zero."""
    used: dict[str, float] = {}
    for pid, (name, total) in after.items():
        if pid in ours:
            continue
        spent = total - before[pid][1] if pid in before and before[pid][0] == name else total
        if spent > 0:
            used[name] = used.get(name, 0.0) + 100.0 * spent / seconds
    return sorted(used.items(), key=lambda item: -item[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name may contain spaces: fields are counted after its closing parenthesis.
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (from /proc/stat; idle and iowait excluded)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:8]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def run_queue_seconds(pid: int) -> float:
    """Time the main thread of `pid` spent runnable but not running (scheduler statistics), in seconds."""
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def pids_named(name: str) -> list[int]:
    """Processes whose command name is `name` (e.g. every PostgreSQL backend)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == name:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _user_pids() -> list[int]:
    """Every process but the kernel's own threads (whose CPUs are the kernel's business)."""
    pids = []
    for entry in os.listdir("/proc"):
        with suppress(OSError):
            if entry.isdigit():
                with open(f"/proc/{entry}/stat") as stat:
                    flags = int(stat.read().rsplit(")", 1)[1].split()[7])
                if not flags & 0x00200000:  # PF_KTHREAD
                    pids.append(int(entry))
    return pids


@contextmanager
def everything_on(cpus: set[int], report: tuple[str, ...] = ("postgres", "redis-server")) -> Iterator[list[str]]:
    """Move every process already running (every thread: PostgreSQL, Redis, the machine's other services) onto
    `cpus` for the block, so the CPUs left out belong to what the benchmark pins there, as separate machines
    would keep them; processes started later inherit the mask (PostgreSQL backends from the postmaster).
    Afterwards each thread gets its mask back, and those started meanwhile all CPUs. Yields the processes named
    in `report` that could not be moved (another user's, without root), for the report."""
    every = set(range(os.cpu_count() or 1))
    before: dict[int, set[int]] = {}
    refused: list[str] = []
    for pid in _user_pids():
        try:
            for task in map(int, os.listdir(f"/proc/{pid}/task")):
                before[task] = os.sched_getaffinity(task)
                os.sched_setaffinity(task, cpus)
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        except OSError as exc:
            with suppress(OSError):
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                if name in report:
                    refused.append(f"{name} {pid}: {exc.strerror or exc}")
    try:
        yield refused
    finally:
        for pid in _user_pids():
            with suppress(OSError):
                for task in map(int, os.listdir(f"/proc/{pid}/task")):
                    if os.sched_getaffinity(task) == cpus:
                        os.sched_setaffinity(task, before.get(task, every))


class CpuGroup:
    """Processes in one CPU cgroup: with `idle`, they only get CPU nothing else wants (`cpu.idle`); with `shares`,
    they get that weight against the default 1024 when a CPU is contended. `nice` cannot give either here: the
    kernel weighs each session's autogroup as a whole, so a niced process still takes half a shared core from
    PostgreSQL, which runs in another session. Where the cgroup cannot be made (no cgroup CPU controller, not
    root), processes get `fallback_nice` and `refused` says why, for the report."""

    def __init__(self, name: str, *, idle: bool = False, shares: int | None = None, fallback_nice: int = 0) -> None:
        base = next((p for p in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")) if p.is_dir()), None)
        self.group = base / name if base else None
        self.settings = {"cpu.idle": "1"} if idle else {"cpu.shares": str(shares)} if shares else {}
        self.fallback_nice = fallback_nice
        self.refused: str | None = None

    def __enter__(self) -> CpuGroup:
        try:
            if self.group is None:
                raise FileNotFoundError("no cgroup file system at /sys/fs/cgroup")
            self.group.mkdir(exist_ok=True)
            for name, value in self.settings.items():
                (self.group / name).write_text(value)
        except OSError as exc:
            wanted = ", ".join(f"{name} {value}" for name, value in self.settings.items())
            self.refused = f"no CPU cgroup with {wanted} ({exc.strerror or exc}); nice {self.fallback_nice} instead"
        return self

    def add(self, pid: int) -> None:
        if self.refused is None and self.group is not None:
            (self.group / "cgroup.procs").write_text(str(pid))
        else:
            os.setpriority(os.PRIO_PROCESS, pid, self.fallback_nice)

    def __exit__(self, *_: object) -> None:
        if self.refused is not None or self.group is None or not self.group.is_dir():
            return
        for pid in (self.group / "cgroup.procs").read_text().split():
            with suppress(OSError):
                (self.group.parent / "cgroup.procs").write_text(pid)
        with suppress(OSError):
            self.group.rmdir()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@dataclass
class CpuSampler:
    """CPU use (percent of one core) of named processes every `every` seconds, in a background thread.

    A group may be a list of pids or a command name resolved at each sample (PostgreSQL starts backends as
    connections open). Samples are (wall time, {group: percent}). For the groups in `waits`, "<group> wait"
    is also sampled: the share of time its main thread was ready to run but waited for a CPU, which tells
    contention for its core apart from work of its own.
    """

    groups: dict[str, list[int] | str]
    waits: tuple[str, ...] = ()
    every: float = 0.5
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _read(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for group, members in self.groups.items():
            pids = pids_named(members) if isinstance(members, str) else members
            readings: dict[int, float] = {}
            for pid in pids:
                try:
                    readings[pid] = cpu_seconds(pid)
                except (OSError, IndexError):
                    continue  # exited between listing and reading
            out[group] = readings
            if group in self.waits:
                out[f"{group} wait"] = {pid: run_queue_seconds(pid) for pid in pids if os.path.exists(f"/proc/{pid}")}
        return out

    def _run(self) -> None:
        last, last_t, last_busy = self._read(), time.time(), machine_busy_seconds()
        while not self._stop.wait(self.every):
            now, now_t, busy = self._read(), time.time(), machine_busy_seconds()
            span = now_t - last_t
            sample = {}
            for group, readings in now.items():
                # Only pids seen both times count: a backend that just started has no baseline yet.
                before = last.get(group, {})
                used = sum(value - before[pid] for pid, value in readings.items() if pid in before)
                sample[group] = 100.0 * used / span
            # Whatever else kept the CPUs busy (other processes, the kernel): load that skews the figures.
            ours = sum(value for group, value in sample.items() if not group.endswith(" wait"))
            sample["other"] = max(0.0, 100.0 * (busy - last_busy) / span - ours)
            self.samples.append((now_t, sample))
            last, last_t, last_busy = now, now_t, busy

    def start(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, dict[str, float]]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples

    def between(self, start: float, end: float) -> dict[str, float]:
        """Mean CPU percent of each group over samples in [start, end]."""
        window = [s for t, s in self.samples if start <= t <= end]
        keys = dict.fromkeys(k for s in window for k in s)
        return {key: sum(s.get(key, 0.0) for s in window) / len(window) for key in keys}
