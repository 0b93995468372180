"""Login attempts per client address, in a sliding one-minute window (per API process), in bounded memory."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0
# Each tracked address costs ~1 KB: at most ~10 MB however many addresses try. When full, the address idle the
# longest is forgotten first; an address with attempts left in its window is only forgotten under a flood of
# this many others within one window.
MAX_CLIENTS = 10_000


def client_key(address: str) -> str:
    """IPv6 clients count per /64: one host usually holds a whole /64, and a new address per attempt is free."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:198.51.100.7 is that IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginLimiter:
    def __init__(
        self, per_minute: int, *, max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self.clock = clock
        # Ordered by each client's latest attempt, oldest first: expired clients are always at the front.
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._attempts)

    def allow(self, client: str) -> bool:
        now = self.clock()
        self._forget_idle(now)
        key = client_key(client)
        window = self._attempts.get(key)
        if window is None:
            window = self._attempts[key] = deque()
        while window and now - window[0] > WINDOW_SECONDS:
            window.popleft()
        if len(window) >= self.per_minute:
            return False  # a refusal is not recorded: the window, and so the memory, stays per_minute long
        window.append(now)
        self._attempts.move_to_end(key)
        if len(self._attempts) > self.max_clients:
            self._attempts.popitem(last=False)
        return True

    def _forget_idle(self, now: float) -> None:
        while self._attempts:
            oldest = next(iter(self._attempts.values()))
            if now - oldest[-1] <= WINDOW_SECONDS:
                return
            self._attempts.popitem(last=False)
