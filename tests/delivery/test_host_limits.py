"""The adaptive per-host limit (fedi.delivery.host_limits): pure, the clock passed in."""

from __future__ import annotations

from fedi.delivery.host_limits import IDLE_SECONDS, HostLimits

H = "far.example"


def ok(limits: HostLimits, n: int, *, at: float, rtt: float = 0.25) -> None:
    for _ in range(n):
        limits.answered(H, sent_at=at - rtt, now=at, status=202)


def test_starts_at_start_and_grows_while_answers_are_fast_up_to_the_ceiling() -> None:
    limits = HostLimits(start=8, ceiling=64)
    assert limits.limit(H, 0.0) == 8
    ok(limits, 8, at=1.0)
    assert limits.limit(H, 1.0) == 16  # slow start: one slot per fast answer
    ok(limits, 200, at=2.0)
    assert limits.limit(H, 2.0) == 64
    assert limits.peak == 64


def test_a_far_host_is_not_slow_for_being_far() -> None:
    limits = HostLimits(start=8, ceiling=64)
    ok(limits, 8, at=10.0, rtt=3.0)  # 3 s every time: steady, so it grows
    assert limits.limit(H, 10.0) == 16


def test_429_and_5xx_halve_the_limit_once_per_round_trip_down_to_the_floor() -> None:
    for status in (429, 500, 502, 503, None):
        limits = HostLimits(start=8, ceiling=64)
        ok(limits, 24, at=1.0)
        assert limits.limit(H, 1.0) == 32
        # 32 requests sent before the first failure came back: they all fail, one cut.
        for _ in range(32):
            limits.answered(H, sent_at=1.0, now=1.25, status=status)
        assert limits.limit(H, 1.25) == 16, status
        # Sent after that cut and failing too: cut again, and so on down to the floor.
        for step in range(10):
            limits.answered(H, sent_at=1.3 + step, now=1.5 + step, status=status)
        assert limits.limit(H, 20.0) == 1


def test_after_a_cut_growth_is_additive() -> None:
    limits = HostLimits(start=8, ceiling=64)
    limits.answered(H, sent_at=0.0, now=0.25, status=503)
    assert limits.limit(H, 0.3) == 4
    ok(limits, 5, at=1.0)  # about a round trip's worth of answers: one slot
    assert limits.limit(H, 1.0) == 5
    ok(limits, 5, at=1.5)
    assert limits.limit(H, 1.5) == 6


def test_slow_answers_shrink_the_limit() -> None:
    limits = HostLimits(start=8, ceiling=64)
    ok(limits, 8, at=1.0, rtt=0.25)
    assert limits.limit(H, 1.0) == 16
    limits.answered(H, sent_at=1.0, now=4.0, status=202)  # 3 s where 0.25 s was usual
    assert limits.limit(H, 4.0) == 8


def test_retry_after_pauses_the_host_until_then() -> None:
    limits = HostLimits()
    limits.answered(H, sent_at=0.0, now=1.0, status=429, retry_after=30.0)
    assert limits.limit(H, 2.0) == 0
    assert limits.paused(2.0) == [H]
    assert limits.limit(H, 30.9) == 0
    assert limits.limit(H, 31.1) == 4
    assert limits.paused(31.1) == []
    limits.answered(H, sent_at=40.0, now=41.0, status=503, retry_after=10**9)
    assert limits.limit(H, 41.0 + 3599) == 0  # capped at an hour
    assert limits.limit(H, 41.0 + 3601) >= 1


def test_other_4xx_neither_grow_nor_cut() -> None:
    limits = HostLimits(start=8)
    limits.answered(H, sent_at=0.0, now=0.2, status=404)
    assert limits.limit(H, 0.2) == 8


def test_bounds_are_kept_and_idle_hosts_are_forgotten() -> None:
    limits = HostLimits(start=100, ceiling=16, floor=0, max_hosts=3)
    assert limits.limit(H, 0.0) == 16  # start within the ceiling
    ok(limits, 8, at=1.0)
    assert limits.limit(H, 1.0) == 16
    for i in range(5):
        limits.answered(f"h{i}.example", sent_at=0.0, now=1.0, status=500)
    assert limits.remembered() == 3  # least recently used forgotten
    assert limits.limit("h4.example", 1.0) == 8
    assert limits.limit("h4.example", 1.0 + IDLE_SECONDS + 1) == 16  # idle: from the start
