"""The outbox on a fake clock (its sleep moves the clock, nothing really waits): the token bucket, dedup with the
repeat count, retries after failures with seeded jitter and after 429 with retry_after, giving up, a full queue, and
the bounded close against a destination that never answers (real time, a fraction of a second)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from trader.alerts.outbox import DELIVERED, Outbox, Outcome, SendResult, TokenBucket
from trader.alerts.rules import Alert, Severity
from trader.service_settings import AlertSettings

from helpers import captured_logs, wait_for

T0 = 1_795_151_700 * 1_000_000_000


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Script:
    """A destination that answers from a list of results (then DELIVERED), recording when each try came."""

    time: FakeTime
    results: list[SendResult] = field(default_factory=list)
    name: str = "fake"
    tries: list[tuple[float, str, int]] = field(default_factory=list)

    async def send(self, alert: Alert, repeats: int) -> SendResult:
        self.tries.append((self.time.now, alert.subject, repeats))
        return self.results.pop(0) if self.results else DELIVERED


def alert(subject: str, severity: Severity = Severity.INFO, kind: str = "test") -> Alert:
    return Alert(kind, severity, subject, f"text of {subject}", T0)


def settings(**overrides: Any) -> AlertSettings:
    values: dict[str, Any] = {"rate_per_minute": 600, "dedup_seconds": 300, "max_attempts": 6,
                              "retry_base_seconds": 1.0, "queue_size": 500, "timeout_seconds": 5}
    return AlertSettings(**{**values, **overrides})


def outbox(time: FakeTime, dest: Script, *, burst: float | None = None, seed: int = 7, **overrides: Any) -> Outbox:
    return Outbox(dest, settings(**overrides), clock=time.clock, sleep=time.sleep, seed=seed, burst=burst)


async def drained(box: Outbox) -> None:
    await wait_for(lambda: box.pending == 0, within_s=5)
    await box.close(0)


async def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    time = FakeTime()
    dest = Script(time)
    box = outbox(time, dest, burst=2, rate_per_minute=60)  # one a second after a burst of two
    box.start()
    for n in range(5):
        box.put(alert(f"a{n}"))
    await drained(box)
    assert [subject for _, subject, _ in dest.tries] == ["a0", "a1", "a2", "a3", "a4"]
    offsets = [round(t - 1_000.0, 6) for t, _, _ in dest.tries]
    assert offsets == [0, 0, 1, 2, 3]


async def test_a_repeat_inside_the_dedup_window_is_counted_into_the_next_one_sent() -> None:
    time = FakeTime()
    dest = Script(time)
    box = outbox(time, dest, dedup_seconds=300)
    box.start()
    assert box.put(alert("x"))
    assert not box.put(alert("x")) and not box.put(alert("x"))
    assert box.put(alert("other"))  # another subject is another alert
    assert box.put(Alert("other_kind", Severity.INFO, "x", "t", T0))  # and so is another kind
    await wait_for(lambda: len(dest.tries) == 3)
    time.now += 299
    assert not box.put(alert("x"))
    time.now += 2
    assert box.put(alert("x"))
    await drained(box)
    assert [(subject, repeats) for _, subject, repeats in dest.tries] == [("x", 0), ("other", 0), ("x", 0), ("x", 3)]
    assert box.stats.deduplicated == 3 and box.stats.delivered == 4


async def test_failures_are_retried_with_exponential_backoff_and_seeded_jitter() -> None:
    delays = []
    for _ in range(2):  # the same seed gives the same jitter
        time = FakeTime()
        dest = Script(time, [SendResult(Outcome.RETRY, "HTTP 500")] * 3)
        box = outbox(time, dest, retry_base_seconds=2.0)
        box.start()
        box.put(alert("a"))
        await drained(box)
        times = [t for t, _, _ in dest.tries]
        assert len(times) == 4 and box.stats.delivered == 1 and box.stats.retries == 3
        gaps = [b - a for a, b in itertools.pairwise(times)]
        for gap, base in zip(gaps, (2.0, 4.0, 8.0), strict=True):
            assert base <= gap <= base * 1.25
        delays.append(gaps)
    assert delays[0] == delays[1]
    other = Outbox(Script(FakeTime()), settings(), seed=8)
    assert [other.backoff_s(1, None) for _ in range(3)] != [Outbox(Script(FakeTime()), settings(), seed=7)
                                                            .backoff_s(1, None) for _ in range(3)]


async def test_a_429_retry_after_is_honoured() -> None:
    time = FakeTime()
    dest = Script(time, [SendResult(Outcome.RETRY, "HTTP 429 Too Many Requests", retry_after_s=17)])
    box = outbox(time, dest)
    box.start()
    box.put(alert("a"))
    await drained(box)
    assert [t - 1_000.0 for t, _, _ in dest.tries] == [0, 17]


async def test_it_gives_up_after_max_attempts_or_a_refusal_and_goes_on() -> None:
    time = FakeTime()
    dest = Script(time, [SendResult(Outcome.RETRY, "HTTP 503")] * 3 + [SendResult(Outcome.GIVE_UP, "HTTP 400")])
    box = outbox(time, dest, max_attempts=3)
    box.start()
    with captured_logs() as logs:
        box.put(alert("a"))
        box.put(alert("b"))
        box.put(alert("c"))
        await drained(box)
    assert [subject for _, subject, _ in dest.tries] == ["a", "a", "a", "b", "c"]
    assert (box.stats.failed, box.stats.delivered) == (2, 1)
    dropped = [line for line in logs if line["event"] == "alert_dropped"]
    assert [(d["subject"], d["attempts"]) for d in dropped] == [("a", 3), ("b", 1)]
    assert "HTTP 503" in dropped[0]["why"] and dropped[1]["why"] == "HTTP 400"


async def test_a_full_queue_drops_the_oldest_of_the_lowest_severity() -> None:
    time = FakeTime()
    box = outbox(time, Script(time), queue_size=10)  # not started: everything waits
    for n in range(3):
        box.put(alert(f"w{n}", Severity.WARNING))
    for n in range(7):
        box.put(alert(f"i{n}"))
    box.put(alert("c0", Severity.CRITICAL))
    box.put(alert("c1", Severity.CRITICAL))
    assert [a.subject for a in box.waiting()] == ["w0", "w1", "w2", "i2", "i3", "i4", "i5", "i6", "c0", "c1"]
    for n in range(7):
        box.put(alert(f"c{n + 2}", Severity.CRITICAL))
    assert [a.subject for a in box.waiting()][:3] == ["w2", "c0", "c1"]  # info first, then the oldest warnings
    assert box.stats.dropped_full == 9
    await box.close(0)


async def test_a_destination_that_raises_is_retried_and_its_message_never_logged() -> None:
    time = FakeTime()

    class Broken:
        name = "broken"
        calls = 0

        async def send(self, alert: Alert, repeats: int) -> SendResult:
            Broken.calls += 1
            if Broken.calls == 1:
                raise RuntimeError("GET https://api.telegram.org/bot123:SECRET/sendMessage failed")
            return DELIVERED

    box = Outbox(Broken(), settings(), clock=time.clock, sleep=time.sleep, seed=1)
    box.start()
    with captured_logs() as logs:
        box.put(alert("a"))
        await drained(box)
    assert box.stats.delivered == 1 and Broken.calls == 2
    assert "SECRET" not in str(logs)
    assert [line["detail"] for line in logs if line["event"] == "alert_retry"] == ["RuntimeError"]


async def test_close_gives_up_at_its_deadline_against_an_endpoint_that_never_answers() -> None:
    class BlackHole:
        name = "black-hole"

        async def send(self, alert: Alert, repeats: int) -> SendResult:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    box = Outbox(BlackHole(), settings(timeout_seconds=60), seed=1)
    box.start()
    for n in range(3):
        box.put(alert(f"a{n}"))
    await wait_for(lambda: box.sending is not None)
    with captured_logs() as logs:
        await asyncio.wait_for(box.close(0.2), timeout=5)  # bounded: well before the 60 s request timeout
    assert box.pending == 0 and box.stats.failed == 3 and box.stats.delivered == 0
    [unsent] = [line for line in logs if line["event"] == "alerts_unsent_at_stop"]
    assert unsent["count"] == 3 and unsent["destination"] == "black-hole"
    assert not box.put(alert("late"))  # closed: nothing more is taken


@pytest.mark.parametrize("rate", [1, 20])
def test_the_bucket_never_allows_more_than_the_rate_over_a_minute(rate: int) -> None:
    bucket = TokenBucket(rate, burst=max(1.0, min(5.0, rate / 4)), now=0.0)
    sent, now = 0, 0.0
    while now < 60.0:
        wait = bucket.wait_s(now)
        if wait == 0:
            bucket.take(now)
            sent += 1
        else:
            now += wait
    assert rate <= sent <= rate + max(1, min(5, rate // 4))


async def test_a_change_of_state_is_never_swallowed_by_dedup() -> None:
    """Unreachable → cleared → unreachable inside the window: all three go out (the last word is the truth)."""
    time = FakeTime()
    dest = Script(time)
    box = outbox(time, dest, dedup_seconds=300)
    box.start()
    for detail in ("down", "up", "down"):
        assert box.put(Alert("venue", Severity.WARNING, "broker_unreachable", detail, T0))
        time.now += 10
    await drained(box)
    assert [subject for _, subject, _ in dest.tries] == ["broker_unreachable"] * 3
    assert box.stats.deduplicated == 0


async def test_a_retry_after_longer_than_five_minutes_is_capped() -> None:
    time = FakeTime()
    dest = Script(time, [SendResult(Outcome.RETRY, "HTTP 429", retry_after_s=86_400)])
    box = outbox(time, dest)
    box.start()
    box.put(alert("a"))
    await drained(box)
    assert max(time.slept) == 300
