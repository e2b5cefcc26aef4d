"""Cancelling orders at the broker, for the execution actor: the operator's CANCEL command, the cancel of MARKET
orders that market protection left resting (the strategy then re-prices them), and a FLATTEN's cancel of our working
orders on what it flattens.

Either way the cancel only asks the broker; the order's terminal CANCELLED update (or its fill, if it filled first)
comes back on the bus like any other update.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from trader.actors.risk import FLATTEN_STRATEGY_ID
from trader.adapters.ports import Broker, OrderRejected, SessionExpired
from trader.events import OrderIntent
from trader.logging import get_logger
from trader.market.instruments import resolve_underlying
from trader.ratelimit import RateLimiter

log = get_logger("trader.execution")


async def cancel_resting(broker: Broker, cancel_at: dict[str, int], open_orders: Mapping[str, str], now_ns: int, *,
                         retry_ns: int, after_s: float) -> None:
    """Cancel the orders of ``cancel_at`` (order id → when) whose time has come; one that fails to cancel is tried
    again ``retry_ns`` later (also one refused for an expired access token: it was not sent), one the broker refuses
    (already complete or gone) is dropped: its update is on the way.

    A protected market order becomes a limit at the protection price; in a fast market it may never fill, and a
    stop-loss exit that rests forever is a stop that never fired.
    """
    for order_id, deadline in list(cancel_at.items()):
        if deadline > now_ns:
            continue
        try:
            await broker.cancel_order(order_id)
        except SessionExpired as exc:  # not sent: the order still rests; try again (a new token may be in by then)
            cancel_at[order_id] = now_ns + retry_ns
            log.warning("order_cancel_failed", order_id=order_id, error=repr(exc))
            continue
        except OrderRejected:
            cancel_at.pop(order_id, None)
            continue
        except Exception as exc:  # try again shortly; the order is still tracked
            cancel_at[order_id] = now_ns + retry_ns
            log.warning("order_cancel_failed", order_id=order_id, error=repr(exc))
            continue
        cancel_at.pop(order_id, None)
        log.warning("order_cancelled_unfilled", order_id=order_id, intent_id=open_orders.get(order_id, ""),
                    after_s=after_s)


def find_open_order(target: str, open_orders: Mapping[str, str], placing: Collection[str],
                    unknown: Collection[str] = ()) -> tuple[str, str, str]:
    """(order id, intent id, "") of the open order ``target`` names, by broker order id or by our intent id (= its
    tag); or ("", "", why not) when it names none. ``placing``: tags whose place call is under way; ``unknown``:
    tags parked because the broker could not say whether it has them."""
    if target in open_orders:
        return target, open_orders[target], ""
    order_id = next((o for o, intent_id in open_orders.items() if intent_id == target), "")
    if order_id:
        return order_id, target, ""
    if not target:
        return "", "", "no order named: give a broker order id or an intent id"
    if target in unknown:
        return "", "", (f"order {target} is not known at the broker yet (it did not answer when the order was placed; "
                        "it is looked up again every few seconds): try again shortly")
    if target in placing:
        return "", "", f"order {target} is still being placed, not yet at the broker: try again in a second"
    return "", "", (f"no open order {target}: it is not an open order of the daemon's (by broker order id or intent "
                    "id); an order that already ended (filled, cancelled, rejected) cannot be cancelled")


async def cancel_for_operator(broker: Broker, limiter: RateLimiter, target: str, open_orders: Mapping[str, str],
                              *, placing: Collection[str], unknown: Collection[str] = ()) -> tuple[bool, str]:
    """The operator's CANCEL: (ok, what happened, in words an operator can act on)."""
    target = target.strip()
    order_id, intent_id, problem = find_open_order(target, open_orders, placing, unknown)
    if problem:
        ok, detail = False, problem
    else:
        await limiter.acquire(urgent=True)  # a cancel takes risk off: ahead of waiting entries
        try:
            await broker.cancel_order(order_id)
        except OrderRejected as exc:
            ok, detail = False, (f"the broker refused to cancel order {order_id} ({exc}): it has probably just "
                                 "filled or ended; `trader orders` shows its state")
        except Exception as exc:  # the broker could not say: the order may still be open
            ok, detail = False, (f"could not cancel order {order_id} ({exc!r}): the broker did not answer; the "
                                 "order may still be open, try again")
        else:
            ok, detail = True, (f"cancel of order {order_id} (intent {intent_id}) accepted by the broker; its "
                                "CANCELLED update follows (or its fill, if it filled first)")
    log.warning("order_cancel_command", target=target, order_id=order_id, intent_id=intent_id, ok=ok, detail=detail)
    return ok, detail


def orders_to_cancel(target: str, open_orders: Mapping[str, str],
                     working: Mapping[str, OrderIntent]) -> tuple[list[tuple[str, str]], list[str]]:
    """The orders a FLATTEN of ``target`` (an underlying, "" = all) must cancel: every working order of ours on it,
    entries and exits alike, but not the flatten's own exits. (order id, intent id) of those open at the broker, and
    the intent ids of those not there yet (being placed, or parked until the broker says). An entry still resting
    after a flatten would fill later and open the position again; a resting exit (a manual limit, a strategy's stop)
    covers the position, so the flatten's own exit could not be sent without selling short."""
    name = ""
    if target:
        try:
            name = resolve_underlying(target).name
        except ValueError:
            return [], []  # the risk gate answers the unknown name; nothing of ours can match it
    caught = {intent_id for intent_id, intent in working.items()
              if intent.strategy_id != FLATTEN_STRATEGY_ID and (not name or intent.contract.underlying == name)}
    open_now = [(order_id, intent_id) for order_id, intent_id in open_orders.items() if intent_id in caught]
    at_broker = {intent_id for _, intent_id in open_now}
    return open_now, sorted(caught - at_broker)


class FlattenCancels:
    """The execution actor's part of a FLATTEN (the command the risk gate publishes, ``source=FLATTEN_SOURCE``):
    cancel our working orders on what is being flattened; those at the broker at once, those still being placed (or
    parked) as soon as the broker has them. The gate sends each position's exit once our orders on it have ended."""

    def __init__(self) -> None:
        self.working: dict[str, OrderIntent] = {}  # intent id → intent, from its request until its terminal update
        self._when_placed: set[str] = set()  # intents a flatten caught before the broker had them

    def track(self, intent: OrderIntent) -> None:
        self.working[intent.intent_id] = intent

    def ended(self, intent_id: str) -> None:
        self.working.pop(intent_id, None)
        self._when_placed.discard(intent_id)

    def caught(self, intent_id: str) -> bool:
        """True if a flatten caught this intent before the broker had it: it must be cancelled, never (re-)sent."""
        return intent_id in self._when_placed

    def placed(self, intent_id: str) -> bool:
        """The broker has the order now: True (once) if a flatten caught it, so it is to be cancelled."""
        if intent_id not in self._when_placed:
            return False
        self._when_placed.discard(intent_id)
        return True

    async def cancel(self, target: str, broker: Broker, limiter: RateLimiter,
                     open_orders: Mapping[str, str]) -> list[str]:
        """Cancel what a FLATTEN of ``target`` catches; returns the order ids whose cancel the broker did not answer
        (to be tried again: the order may still be open, and the gate waits for it to end)."""
        open_now, waiting = orders_to_cancel(target, open_orders, self.working)
        for intent_id in waiting:
            self._when_placed.add(intent_id)
            log.warning("flatten_cancels_order_when_placed", intent_id=intent_id)
        retry: list[str] = []
        for order_id, intent_id in open_now:
            await limiter.acquire(urgent=True)
            try:
                await broker.cancel_order(order_id)
            except OrderRejected as exc:  # filled or ended meanwhile: its update is on the way
                log.warning("flatten_order_cancel_refused", order_id=order_id, intent_id=intent_id, error=str(exc))
            except Exception as exc:  # the broker did not answer: the order may still be open
                retry.append(order_id)
                log.warning("flatten_order_cancel_failed", order_id=order_id, intent_id=intent_id, error=repr(exc),
                            action="tried again shortly")
            else:
                log.warning("flatten_cancelled_order", order_id=order_id, intent_id=intent_id,
                            purpose=self.working[intent_id].purpose.value)
        return retry
