"""The login limiter: a sliding window per client, in memory that stays bounded whatever addresses try."""

from __future__ import annotations

import tracemalloc

from cml_cloud_manager.auth.ratelimit import MAX_CLIENTS, WINDOW_SECONDS, LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides() -> None:
    clock = Clock()
    limiter = LoginLimiter(3, clock=clock)
    assert [limiter.allow("198.51.100.7") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("198.51.100.8"), "another client has its own allowance"
    clock.now += WINDOW_SECONDS / 2
    assert not limiter.allow("198.51.100.7"), "refused attempts do not restart the window, nor does waiting less"
    clock.now += WINDOW_SECONDS / 2 + 0.1
    assert limiter.allow("198.51.100.7")


def test_idle_clients_are_forgotten() -> None:
    clock = Clock()
    limiter = LoginLimiter(10, clock=clock)
    for i in range(500):
        limiter.allow(f"198.51.100.{i % 250}")
        limiter.allow(f"2001:db8:{i}::1")
        clock.now += 0.01
    assert len(limiter) == 750
    clock.now += WINDOW_SECONDS + 1
    assert limiter.allow("203.0.113.9")
    assert len(limiter) == 1, "every client whose attempts left the window is gone"


def test_a_flood_of_addresses_stays_within_the_cap() -> None:
    """The issue's 30,000 forged addresses within one minute: the entries stop at the cap, memory with them."""
    clock = Clock()
    limiter = LoginLimiter(10, clock=clock)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(30_000):
            assert limiter.allow(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
            clock.now += 0.001
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(limiter) == MAX_CLIENTS
    assert grown < 15 * 1024 * 1024, f"{grown / 1e6:.1f} MB for {MAX_CLIENTS} clients"
    # the newest clients are the ones kept: an address still inside its window keeps its count
    for _ in range(9):
        assert limiter.allow("10.0.117.47")  # address 29,999
    assert not limiter.allow("10.0.117.47")


def test_an_ipv6_client_counts_per_64() -> None:
    limiter = LoginLimiter(3, clock=Clock())
    assert [limiter.allow(f"2001:db8:1:2::{i:x}") for i in range(4)] == [True, True, True, False]
    assert limiter.allow("2001:db8:1:3::1"), "the next /64 is another client"
    assert [limiter.allow(a) for a in ("::ffff:192.0.2.1", "192.0.2.1", "192.0.2.1")] == [True, True, True]
    assert not limiter.allow("::ffff:192.0.2.1"), "an IPv4-mapped address is that IPv4 client"
