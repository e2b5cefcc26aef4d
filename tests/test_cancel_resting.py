"""The cancel of a resting protected order (trader/actors/cancels.py ``cancel_resting``): refused for an expired
access token it is tried again (it was never sent: the order still rests); refused as gone it is dropped."""

from __future__ import annotations

from typing import Any

from trader.actors.cancels import cancel_resting
from trader.adapters.fyers.errors import FyersSessionExpired
from trader.adapters.kite.errors import KiteSessionExpired
from trader.adapters.ports import OrderRejected, SessionExpired


class Broker:
    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def cancel_order(self, order_id: str) -> None:
        self.calls.append(order_id)
        answer = self.answers.pop(0)
        if answer is not None:
            raise answer


async def run(broker: Any, cancel_at: dict[str, int], now: int) -> None:
    await cancel_resting(broker, cancel_at, {"O1": "INTENT1"}, now, retry_ns=5, after_s=30.0)


async def test_a_cancel_refused_for_an_expired_token_is_tried_again_until_it_goes_through() -> None:
    for expired in (KiteSessionExpired("token expired"), FyersSessionExpired("token expired")):
        assert isinstance(expired, SessionExpired)
        broker = Broker(expired, None)
        cancel_at = {"O1": 10}
        await run(broker, cancel_at, now=10)
        assert cancel_at == {"O1": 15}  # still tracked: the stop-loss exit must not rest forever
        await run(broker, cancel_at, now=14)
        assert broker.calls == ["O1"]  # not before its retry time
        await run(broker, cancel_at, now=15)
        assert broker.calls == ["O1", "O1"] and cancel_at == {}


async def test_a_cancel_the_broker_refuses_as_gone_is_dropped() -> None:
    broker = Broker(OrderRejected("order already complete"))
    cancel_at = {"O1": 10}
    await run(broker, cancel_at, now=10)
    assert cancel_at == {} and broker.calls == ["O1"]
