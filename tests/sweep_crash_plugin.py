"""A strategy for tests/test_sweep.py that kills its worker process: the opening-range breakout, except that with
``[strategy] lots = 2`` its constructor ends the process at once (as the kernel's OOM killer or a segfault would)."""

from __future__ import annotations

import os
from typing import ClassVar

from trader.config import StrategySettings
from trader.market.instruments import UnderlyingSpec
from trader.strategies.orb import OpeningRangeBreakout, OrbParams


class CrashOnTwoLots(OpeningRangeBreakout):
    name: ClassVar[str] = "crash_on_two_lots"

    def __init__(self, strategy_id: str, underlying: UnderlyingSpec, common: StrategySettings,
                 params: OrbParams | None = None) -> None:
        if common.lots == 2:
            os._exit(70)
        super().__init__(strategy_id, underlying, common, params)
