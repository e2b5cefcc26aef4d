"""The report's charts as plotly figures, built from a ``RunView`` (figures from ``trader.report.metrics`` only;
the two series drawn here that are not metrics — the drawdown under the running peak and the open quantity per
contract — are plain running sums of what the run recorded).

Money is drawn in rupees (``trader.money.to_rupees``), times as IST wall-clock text (``YYYY-MM-DD HH:MM:SS``) so the
axes read in Indian time whatever the viewer's zone. Series are Python lists, never numpy arrays, so the figure JSON
holds plain numbers (plotly encodes arrays as base64 typed arrays) and the tests can read it back.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trader.money import to_rupees
from trader.report.summary import CHARGE_LABELS, RunView, ist_time, time_ordered_fills

TEMPLATE = "plotly_white"
GREEN = "#1a7f37"
RED = "#cf222e"
BLUE = "#0969da"
GREY = "#6e7781"
HEIGHT = 420
GAP_NS = 3 * 3_600 * 1_000_000_000  # a pause this long between two moments drawn (a night, a weekend) is cut out
_PAD_NS = 10 * 60 * 1_000_000_000  # ... keeping 10 minutes on each side


@dataclass(frozen=True, slots=True)
class Chart:
    name: str  # a file-name-safe id: the HTML div is chart-<name>, the PNG <name>.png
    title: str
    figure: go.Figure


def _layout(fig: go.Figure, title: str, *, empty: str | None = None, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title={"text": title}, height=height, margin={"l": 60, "r": 20, "t": 60,
                                                                                        "b": 50},
                      legend={"orientation": "h", "y": -0.15}, hovermode="x unified")
    if empty is not None:
        fig.add_annotation(text=empty, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                           font={"size": 16, "color": GREY})
    return fig


def gap_breaks(moments: list[int]) -> list[dict[str, object]]:
    """Plotly ``rangebreaks`` that cut the time axis where nothing happened for ``GAP_NS`` or more (nights,
    weekends, holidays), from the moments actually drawn: a special session (muhurat, a Saturday) still shows."""
    ordered = sorted(set(moments))
    return [{"bounds": [ist_time(a + _PAD_NS), ist_time(b - _PAD_NS)]}
            for a, b in pairwise(ordered) if b - a >= GAP_NS]


def equity_chart(v: RunView) -> Chart:
    """Equity (₹) and the drawdown under its running peak (% of the peak), on one shared IST time axis. The
    running peak starts at the initial capital, as in ``metrics.drawdown``."""
    rows = sorted(v.run.equity, key=lambda e: e.ts_ns)
    x = [ist_time(e.ts_ns) for e in rows]
    peak = v.run.manifest.initial_capital
    under: list[float] = []
    for e in rows:
        peak = max(peak, e.equity)
        under.append(-(peak - e.equity) / peak * 100 if peak > 0 else 0.0)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.06)
    fig.add_trace(go.Scatter(x=x, y=[to_rupees(e.equity) for e in rows], mode="lines", name="equity (₹)",
                             line={"color": BLUE}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=under, mode="lines", name="drawdown (% of peak)", fill="tozeroy",
                             line={"color": RED}), row=2, col=1)
    fig.update_yaxes(title_text="₹", row=1, col=1)
    fig.update_yaxes(title_text="% below peak", row=2, col=1)
    fig.update_xaxes(rangebreaks=gap_breaks([e.ts_ns for e in rows]))
    fig.update_xaxes(title_text="IST (nights and other pauses cut out)", row=2, col=1)
    return Chart("equity", "Equity and drawdown", _layout(fig, "Equity (₹) and drawdown (% below the running peak)",
                                                          empty=None if rows else "no equity samples", height=560))


def daily_pnl_chart(v: RunView) -> Chart:
    days = v.metrics.days
    fig = go.Figure(go.Bar(x=[d.day.isoformat() for d in days], y=[to_rupees(d.pnl) for d in days],
                           marker={"color": [GREEN if d.pnl >= 0 else RED for d in days]}, name="day P&L (₹)"))
    fig.update_xaxes(type="category", title_text="IST trading day")
    fig.update_yaxes(title_text="₹")
    return Chart("daily_pnl", "Daily P&L", _layout(fig, "Daily P&L (₹, equity close to close)",
                                                   empty=None if days else "no trading days"))


def slippage_chart(v: RunView) -> Chart:
    """Per-fill slippage in bps (``FillRecord.slippage_bps``), a histogram per order type; and the mean and p90 per
    IST hour of the fill (``metrics.slippage.by_ist_hour``)."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for fill in time_ordered_fills(v.run):
        value = fill.record().slippage_bps
        if value is not None:
            by_type[fill.order_type].append(value)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("per fill, by order type", "by IST hour of the fill"),
                        horizontal_spacing=0.1)
    for order_type, values in sorted(by_type.items()):
        fig.add_trace(go.Histogram(x=values, name=order_type, opacity=0.75), row=1, col=1)
    hours = v.metrics.slippage.by_ist_hour
    labels = [f"{h:02d}:00" for h in hours]
    fig.add_trace(go.Bar(x=labels, y=[s.mean_bps for s in hours.values()], name="mean bps", marker={"color": BLUE}),
                  row=1, col=2)
    fig.add_trace(go.Bar(x=labels, y=[s.p90_bps for s in hours.values()], name="p90 bps", marker={"color": GREY}),
                  row=1, col=2)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="bps (positive = worse than expected)", row=1, col=1)
    fig.update_xaxes(type="category", title_text="IST hour", row=1, col=2)
    fig.update_yaxes(title_text="fills", row=1, col=1)
    fig.update_yaxes(title_text="bps", row=1, col=2)
    return Chart("slippage", "Slippage", _layout(fig, "Slippage (bps)",
                                                 empty=None if by_type else "no fills with an expected price"))


def charges_chart(v: RunView) -> Chart:
    charges = v.metrics.charges
    kinds = charges.as_dict()
    x = [CHARGE_LABELS[k] for k in kinds]
    y = [to_rupees(p) for p in kinds.values()]
    if charges.unattributed:
        x.append("unattributed")
        y.append(to_rupees(charges.unattributed))
    fig = go.Figure(go.Bar(x=x, y=y, marker={"color": BLUE}, name="charges (₹)"))
    fig.update_yaxes(title_text="₹")
    return Chart("charges", "Charges by kind", _layout(fig, f"Charges by kind (₹; total recorded "
                                                            f"₹{to_rupees(charges.recorded):,.2f})",
                                                       empty=None if v.run.fills else "no fills, no charges"))


def exposure_chart(v: RunView) -> Chart:
    """The open quantity of each contract over time (signed: + long, − short), a step after every fill."""
    start, end = v.run.manifest.started_ns, v.run.manifest.ended_ns
    held: dict[str, int] = defaultdict(int)
    series: dict[str, tuple[list[int], list[int]]] = {}
    for fill in time_ordered_fills(v.run):
        key = fill.tradingsymbol or str(fill.instrument_token)
        held[key] += fill.side.sign * fill.quantity
        xs, ys = series.setdefault(key, ([start], [0]) if 0 < start < fill.ts_ns else ([], []))
        xs.append(fill.ts_ns)
        ys.append(held[key])
    fig = go.Figure()
    moments: list[int] = []
    for key, (xs, ys) in series.items():
        if end > xs[-1]:  # the last level held to the end of the run
            xs.append(end)
            ys.append(ys[-1])
        moments += xs
        fig.add_trace(go.Scatter(x=[ist_time(x) for x in xs], y=ys, mode="lines", line={"shape": "hv"}, name=key))
    fig.update_yaxes(title_text="open quantity (units)")
    fig.update_xaxes(title_text="IST (nights and other pauses cut out)", rangebreaks=gap_breaks(moments))
    return Chart("exposure", "Exposure", _layout(fig, "Exposure: open quantity per contract (+ long, − short)",
                                                 empty=None if series else "no positions"))


def charts(v: RunView) -> list[Chart]:
    return [equity_chart(v), daily_pnl_chart(v), slippage_chart(v), charges_chart(v), exposure_chart(v)]

