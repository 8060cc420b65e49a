"""The admin token throttle: waits that double after a few wrong tokens, bounded in time and in memory.
The clock is a fake one moved by the tests; nothing sleeps."""

from __future__ import annotations

from assethooks.web.throttle import ALLOWED_FAILURES, LoginThrottle, client_key, delay_after


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(
    clock: FakeClock, *, first_delay: float = 1, max_clients: int = 1000, forget_after: float = 3600
) -> LoginThrottle:
    return LoginThrottle(
        first_delay=first_delay, max_delay=60, max_clients=max_clients, forget_after=forget_after, clock=clock
    )


def test_a_few_wrong_tokens_cost_nothing_then_each_one_doubles_the_wait() -> None:
    clock = FakeClock()
    guard = throttle(clock)
    waits = []
    for _ in range(ALLOWED_FAILURES - 1):
        waits.append(guard.failed("198.51.100.7"))
        assert guard.retry_after("198.51.100.7") == 0
    for _ in range(9):
        waits.append(guard.failed("198.51.100.7"))
        assert guard.retry_after("198.51.100.7") == waits[-1]
        clock.now += waits[-1]  # waits it out, then tries again
        assert guard.retry_after("198.51.100.7") == 0
    assert waits == [0] * (ALLOWED_FAILURES - 1) + [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_the_wait_counts_down_and_refused_attempts_do_not_count() -> None:
    clock = FakeClock()
    guard = throttle(clock, first_delay=10)
    for _ in range(ALLOWED_FAILURES):
        guard.failed("198.51.100.7")
    assert guard.retry_after("198.51.100.7") == 10
    clock.now += 2.5
    assert guard.retry_after("198.51.100.7") == 8  # whole seconds, rounded up
    assert guard.retry_after("203.0.113.9") == 0  # other addresses are not affected
    clock.now += 7.5
    assert guard.retry_after("198.51.100.7") == 0
    assert guard.failed("198.51.100.7") == 20


def test_a_right_token_clears_the_client() -> None:
    clock = FakeClock()
    guard = throttle(clock)
    for _ in range(ALLOWED_FAILURES + 3):
        guard.failed("198.51.100.7")
        clock.now += 60
    guard.succeeded("198.51.100.7")
    assert guard.retry_after("198.51.100.7") == 0
    assert len(guard) == 0
    assert [guard.failed("198.51.100.7") for _ in range(ALLOWED_FAILURES)][-2:] == [0, 1]


def test_the_table_is_bounded_and_forgets_quiet_clients() -> None:
    clock = FakeClock()
    guard = throttle(clock, max_clients=100, forget_after=3600)
    for number in range(1000):
        for _ in range(ALLOWED_FAILURES):
            guard.failed(f"10.0.{number // 256}.{number % 256}")
    assert len(guard) == 100
    assert guard.retry_after("10.0.3.231") == 1  # the most recent ones are kept
    assert guard.retry_after("10.0.0.0") == 0
    clock.now += 3600
    guard.failed("192.0.2.1")
    assert len(guard) == 1


def test_failures_are_counted_per_address_and_per_ipv6_network() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key(None) == "unknown"


def test_the_wait_stays_bounded_however_many_failures() -> None:
    for failures in (64, 1025, 10**6):
        assert delay_after(failures, allowed_failures=5, first_delay=1, max_delay=300) == 300
