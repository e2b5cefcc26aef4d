"""What the bench scripts share: a figure measured beside its baseline (measured in the same run), printed as one line.

Standard output carries only the figure lines (and, with ``--json``, one JSON object as the last line), so
``make bench`` prints the figures and nothing else; progress, context and detail tables go to standard error.
One figure line reads::

    bus + 5 actors, replayed ticks: 198,000 ev/s | baseline bare 5-coroutine pipeline 272,000 ev/s | 0.727x

The ratio is always figure ÷ baseline: above 1 means more events per second, or a longer latency, than the baseline.
``tests/test_bench.py`` parses these lines with ``FIGURE_LINE``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FIGURE_LINE = re.compile(
    r"^(?P<label>[^|]+?): (?P<value>[\d,]+(?:\.\d+)?) (?P<unit>\S+)"
    r" \| baseline (?P<baseline_label>[^|]+?) (?P<baseline>[\d,]+(?:\.\d+)?) (?P<baseline_unit>\S+)"
    r" \| (?P<ratio>[\d,]+(?:\.\d+)?)x$"
)


def number(value: float) -> str:
    """Three significant digits, never in scientific notation, thousands separated: 272,345 · 61.3 · 0.734."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    value: float
    unit: str
    baseline_label: str
    baseline: float

    def __post_init__(self) -> None:
        if not (self.value > 0 and self.baseline > 0):
            raise ValueError(f"{self.label}: a figure and its baseline must be positive, got {self.value} and "
                             f"{self.baseline}")

    @property
    def ratio(self) -> float:
        return self.value / self.baseline

    def line(self) -> str:
        return (f"{self.label}: {number(self.value)} {self.unit} | baseline {self.baseline_label} "
                f"{number(self.baseline)} {self.unit} | {number(self.ratio)}x")

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "unit": self.unit, "baseline_label": self.baseline_label,
                "baseline": self.baseline, "ratio": round(self.ratio, 4)}


def note(*parts: object) -> None:
    """Progress and context: standard error, so standard output stays the figures."""
    print(*parts, file=sys.stderr, flush=True)


def emit(figures: Sequence[Figure], results: dict[str, Any] | None = None) -> None:
    """The figure lines on standard output; with ``results`` (``--json``) then one JSON object holding them too."""
    for figure in figures:
        print(figure.line(), flush=True)
    if results is not None:
        print(json.dumps({**results, "figures": [f.as_dict() for f in figures]}, ensure_ascii=False), flush=True)
