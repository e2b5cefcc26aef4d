"""The facade's event loop: one asyncio loop in one background daemon thread, shared by every facade object.

The seed's API is synchronous; the adapters underneath (the built-in market, the paper broker, the Kite REST client
and ticker, the daemon's ``App``) are asyncio. Every facade object that starts something holds a *lease* on the one
``RUNNER``: the thread starts with the first lease and stops — every task cancelled, the loop closed, the thread
joined — when the last lease is released. ``shutdown()`` closes every holder (the end of a notebook or a test), and
runs at interpreter exit, so a forgotten object never keeps the process from exiting cleanly.

A facade call from inside the loop thread itself would wait for itself forever: it is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

THREAD_NAME = "trader-api-loop"
_STOP_TIMEOUT_S = 10.0


class Holder(Protocol):
    """A facade object that holds a lease: ``close()`` stops what it runs and releases the lease."""

    def close(self) -> object: ...


class LoopRunner:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._holders: dict[int, Holder] = {}

    # -- leases --------------------------------------------------------------------------------------------------
    def acquire(self, holder: Holder) -> None:
        """``holder`` uses the loop from now on (idempotent); starts the thread if it is not running."""
        with self._lock:
            self._holders[id(holder)] = holder
            if self._thread is None:
                self._start()

    def release(self, holder: Holder) -> None:
        """``holder`` is done; the last one out stops the thread (every remaining task is cancelled first)."""
        with self._lock:
            if self._holders.pop(id(holder), None) is None or self._holders:
                return
            self._stop()

    def holds(self, holder: Holder) -> bool:
        return id(holder) in self._holders

    @property
    def running(self) -> bool:
        return self._thread is not None

    def shutdown(self) -> None:
        """Close every holder (each stops what it runs), then stop the thread; the first failure is raised after."""
        errors: list[Exception] = []
        while True:
            with self._lock:
                holders = list(self._holders.values())
            if not holders:
                break
            for holder in holders:
                try:
                    holder.close()
                except Exception as exc:
                    errors.append(exc)
                finally:
                    self.release(holder)  # a holder whose close failed must not keep the thread alive
        with self._lock:
            if self._thread is not None:
                self._stop()
        if errors:
            raise errors[0]

    # -- calls from the caller's thread --------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None, *, what: str = "") -> T:
        """Run ``coro`` on the loop and wait for its result (its exception is raised here, as is)."""
        future = self.submit(coro)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{what or 'the call'} did not finish within {timeout_s:g}s") from None

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        loop = self._checked_loop(coro)
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call(self, fn: Callable[[], T], timeout_s: float | None = 30.0) -> T:
        """Run the plain function ``fn`` in the loop thread (state the loop owns is read there, never here)."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout_s)

    def _checked_loop(self, coro: Coroutine[Any, Any, object]) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or self._thread is None:
            coro.close()
            raise RuntimeError("the trader.api event loop is not running: connect()/start() the object first")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a trader.api call from inside its own event loop would wait for itself forever; "
                               "call it from another thread (or use the asyncio actors directly)")
        return loop

    # -- the thread ------------------------------------------------------------------------------------------------
    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                with contextlib.suppress(Exception):  # worker threads (DNS look-ups, to_thread) end with the loop
                    loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        thread = threading.Thread(target=main, name=THREAD_NAME, daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("the trader.api event loop cannot be stopped from inside itself")
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result(_STOP_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT_S)
        self._loop = self._thread = None


async def _cancel_others() -> None:
    """Cancel every task but this one and wait for them to finish (their ``finally`` blocks run)."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


RUNNER = LoopRunner()


def shutdown() -> None:
    """Stop every trader.api object still running (data managers, brokers, trading systems) and the loop thread."""
    RUNNER.shutdown()


atexit.register(shutdown)
