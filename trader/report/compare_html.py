"""The reality check as one self-contained HTML page: plain tables and an inline SVG of both runs' P&L curves.

No script, no stylesheet or font from the network: the page opens offline and can be mailed. Every text that comes
from a run (ids, symbols, reasons, the broker's words) is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from trader.market.calendar import IST
from trader.report.compare_model import (
    CATEGORY_TEXT,
    EXPECTED_DEGRADATION,
    NS_PER_SECOND,
    Comparison,
    RunSide,
    Unmatched,
)
from trader.report.compare_text import (
    bps_text,
    coverage_notes,
    metric_rows,
    model_notes,
    rupees,
    seconds_text,
    signed_rupees,
    time_text,
)
from trader.runs.model import TradeRow

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 72rem;
       color: #1d2733; padding: 0 1rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #ccd; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .88rem; }
th, td { border: 1px solid #d5dae1; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f1f4f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pos { color: #1a7f37; } .neg { color: #b42318; } .note { color: #5b6675; font-size: .85rem; }
.warn { background: #fff4e5; border: 1px solid #f5b971; padding: .5rem; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #b42318; font-weight: 600; }
"""

_REF_COLOUR = "#3b6fb6"
_CAND_COLOUR = "#d9822b"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _money_cell(paise: int, *, signed: bool = True) -> str:
    css = "num pos" if paise > 0 else "num neg" if paise < 0 else "num"
    return f'<td class="{css}">{_e(signed_rupees(paise) if signed else rupees(paise))}</td>'


def _cell(text: object, *, num: bool = False) -> str:
    return f'<td class="num">{_e(text)}</td>' if num else f"<td>{_e(text)}</td>"


def _table(headers: Sequence[str], rows: Iterable[str], *, empty: str = "none") -> str:
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="note">{_e(empty)}</td></tr>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _run_label(side: RunSide) -> str:
    return f"{side.label} · {side.run_id} ({side.mode})"


def _day_text(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=IST).strftime("%Y-%m-%d")


# --- the P&L curves ------------------------------------------------------------------------------------------------


def _curve(trades: Sequence[TradeRow]) -> list[tuple[int, int]]:
    """Cumulative round-trip net P&L at each exit, as steps."""
    points: list[tuple[int, int]] = []
    total = 0
    for trade in sorted(trades, key=lambda t: t.exit_ns):
        points.append((trade.exit_ns, total))
        total += trade.net
        points.append((trade.exit_ns, total))
    return points


def pnl_svg(reference: Sequence[TradeRow], candidate: Sequence[TradeRow], labels: tuple[str, str]) -> str:
    """Both runs' cumulative net P&L (₹) against IST time, as an inline SVG."""
    curves = [_curve(reference), _curve(candidate)]
    moments = [t for curve in curves for t, _ in curve]
    if not moments:
        return '<p class="note">No closed trades in either run: no P&amp;L curve.</p>'
    width, height, pad_left, pad = 860, 260, 90, 24
    t0, t1 = min(moments), max(moments)
    values = [0] + [v for curve in curves for _, v in curve]
    v0, v1 = min(values), max(values)
    span_t = max(t1 - t0, 1)
    span_v = max(v1 - v0, 1)

    def x(ts: int) -> float:
        return pad_left + (ts - t0) / span_t * (width - pad_left - pad)

    def y(value: int) -> float:
        return pad + (v1 - value) / span_v * (height - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="cumulative net P&amp;L of both runs">',
             f'<line x1="{pad_left}" y1="{y(0):.1f}" x2="{width - pad}" y2="{y(0):.1f}" stroke="#999" '
             'stroke-dasharray="4 3"/>',
             f'<text x="{pad_left - 6}" y="{y(v1) + 4:.1f}" text-anchor="end" font-size="11">{_e(rupees(v1))}</text>',
             f'<text x="{pad_left - 6}" y="{y(v0) + 4:.1f}" text-anchor="end" font-size="11">{_e(rupees(v0))}</text>',
             f'<text x="{pad_left}" y="{height - 4}" font-size="11">{_e(time_text(t0))}</text>',
             f'<text x="{width - pad}" y="{height - 4}" text-anchor="end" font-size="11">{_e(time_text(t1))}</text>']
    for curve, colour, label, row in ((curves[0], _REF_COLOUR, labels[0], 0), (curves[1], _CAND_COLOUR, labels[1], 1)):
        if curve:
            points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in [(t0, 0), *curve, (t1, curve[-1][1])])
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<rect x="{pad_left + 10}" y="{pad + row * 16 - 9}" width="12" height="4" fill="{colour}"/>'
                     f'<text x="{pad_left + 28}" y="{pad + row * 16 - 4}" font-size="11">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- sections ------------------------------------------------------------------------------------------------------


def _summary(c: Comparison) -> str:
    rows = []
    for name, ref, cand, change, band in metric_rows(c):
        rows.append(f"{_cell(name)}{_cell(ref, num=True)}{_cell(cand, num=True)}{_cell(change, num=True)}"
                    f"{_cell(band)}")
    low, high = EXPECTED_DEGRADATION
    note = (f'<p class="note">Change = (candidate − reference) / |reference|; "—" when a figure is undefined (no '
            f"trades, one trading day for Sharpe, no loss for the profit factor). The seed expects live results "
            f"{low:.0%}–{high:.0%} worse than the backtest's.</p>")
    return _table(["figure", f"reference {c.reference.label}", f"candidate {c.candidate.label}", "change",
                   "against the expected 30–50 %"], rows) + note


def _attribution(c: Comparison) -> str:
    att = c.attribution
    rows = [f"{_cell('P&L gap (candidate − reference)')}{_money_cell(att.gap)}"]
    rows += [f"{_cell(name)}{_money_cell(value)}" for name, value in att.parts()]
    detail_rows = []
    for label, by_category in (("missed", att.missed_by_category), ("extra", att.extra_by_category)):
        for category, value in sorted(by_category.items()):
            detail_rows.append(f"{_cell(label)}{_cell(category)}{_cell(CATEGORY_TEXT.get(category, ''))}"
                               f"{_money_cell(value)}")
    return (_table(["part", "₹"], rows)
            + '<p class="note">Slippage: matched trades\' Σ (fill − expected) × side × qty, candidate vs reference; '
              "charges: their charges; latency and price: the rest of their net difference (other times, prices, "
              "sizes); missed: −net of the reference's trades the candidate did not make; extra: net of the "
              "candidate's trades the reference did not make. The parts sum to the gap exactly (residual 0).</p>"
            + _table(["", "category", "meaning", "₹"], detail_rows, empty="no missed or extra trades"))


def _matched(c: Comparison) -> str:
    rows = []
    for m in c.trades:
        r, k = m.reference, m.candidate
        rows.append(
            _cell(r.strategy_id) + _cell(r.tradingsymbol) + _cell(r.direction)
            + _cell(f"{r.quantity} / {k.quantity}", num=True)
            + _cell(f"{time_text(r.entry_ns)} / {time_text(k.entry_ns)}")
            + _cell(seconds_text(m.entry_diff_s), num=True)
            + _cell(f"{rupees(r.entry_price)} / {rupees(k.entry_price)}", num=True)
            + _cell(f"{m.entry_price_diff:+d} p ({bps_text(m.entry_price_diff_bps)} bps)", num=True)
            + _cell(f"{time_text(r.exit_ns)} / {time_text(k.exit_ns)}")
            + _cell(seconds_text(m.exit_diff_s), num=True)
            + _cell(f"{rupees(r.exit_price)} / {rupees(k.exit_price)}", num=True)
            + _cell(f"{m.exit_price_diff:+d} p ({bps_text(m.exit_price_diff_bps)} bps)", num=True)
            + _cell(f"{rupees(r.net)} / {rupees(k.net)}", num=True) + _money_cell(m.net_diff)
            + _money_cell(m.slippage) + _money_cell(m.charges) + _money_cell(m.latency_price) + _cell(m.note))
    return _table(["strategy", "contract", "dir", "qty", "entry (ref / cand)", "Δ entry", "entry price",
                   "Δ entry price", "exit", "Δ exit", "exit price", "Δ exit price", "net", "Δ net", "slippage",
                   "charges", "latency+price", "note"], rows, empty="no trade found in both runs")


def _unmatched_rows(c: Comparison, items: Sequence[Unmatched], *, with_net: bool) -> list[str]:
    rows = []
    for u in items:
        side = c.reference if u.run == "reference" else c.candidate
        row = (_cell(f"{side.label} only") + _cell(time_text(u.ts_ns)) + _cell(u.strategy_id) + _cell(u.what)
               + (_money_cell(u.net) if with_net else "") + _cell(u.category) + _cell(u.detail))
        rows.append(row)
    return rows


def _signals(c: Comparison) -> str:
    matched = [_cell(s.reference.strategy_id) + _cell(f"{s.reference.underlying} {s.reference.direction}")
               + _cell(f"{time_text(s.reference.ts_ns)} / {time_text(s.candidate.ts_ns)}")
               + _cell(seconds_text(s.offset_s), num=True) for s in c.signals]
    return (_table(["run", "time", "strategy", "signal", "category", "why"],
                   _unmatched_rows(c, c.unmatched_signals, with_net=False), empty="every signal is in both runs")
            + "<details><summary>Matched signals "
            + f"({len(c.signals)})</summary>"
            + _table(["strategy", "signal", "time (ref / cand)", "offset"], matched, empty="none")
            + "</details>")


def _checklist(c: Comparison) -> str:
    rows = []
    for item in c.checklist.items:
        verdict = "not evaluated" if item.passed is None else "pass" if item.passed else "fail"
        css = "" if item.passed is None else "pass" if item.passed else "fail"
        rows.append(f"{_cell(item.requirement)}<td class=\"{css}\">{_e(verdict)}</td>{_cell(item.detail)}")
    return _table(["requirement", "result", "figure"], rows)


def render_html(c: Comparison) -> str:
    """The whole page as text."""
    ref, cand = c.reference, c.candidate
    title = f"Reality check: {cand.run_id} ({cand.mode}) vs {ref.run_id} ({ref.mode})"
    warnings = [f"Run {side.label} ({side.run_id}) did not stop cleanly: its tables were rebuilt from events.jsonl "
                "and may miss the last moments." for side in (ref, cand) if not side.complete]
    days = sorted({_day_text(ref.started_ns), _day_text(cand.started_ns)})
    warn_html = "".join(f'<p class="warn">{_e(w)}</p>' for w in [*model_notes(c), *warnings, *coverage_notes(c)])
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Reference: <b>{_e(_run_label(ref))}</b> · candidate: <b>{_e(_run_label(cand))}</b> · trades and "
        f"signals matched within ±{c.tolerance_ns / NS_PER_SECOND:.0f} s of event time"
        f" · {_e(' / '.join(days))}. Times are IST.</p>",
        warn_html,
        "<h2>Degradation</h2>", _summary(c),
        "<h2>P&amp;L gap attribution</h2>", _attribution(c),
        "<h2>Cumulative net P&amp;L</h2>",
        pnl_svg(ref.trades, cand.trades, (_run_label(ref), _run_label(cand))),
        f"<h2>Matched trades ({len(c.trades)})</h2>", _matched(c),
        f"<h2>Trades in one run only ({len(c.unmatched_trades)})</h2>",
        _table(["run", "entry", "strategy", "trade", "net", "category", "why"],
               _unmatched_rows(c, c.unmatched_trades, with_net=True), empty="every trade is in both runs"),
        f"<h2>Signals in one run only ({len(c.unmatched_signals)})</h2>", _signals(c),
        f"<h2>Go-live checklist of {_e(cand.label)} (live ≈ backtest judged against {_e(ref.label)})</h2>",
        _checklist(c),
        "</body></html>\n",
    ])


def write_compare_html(c: Comparison, out_dir: Path) -> Path:
    """Write ``compare-<reference>-vs-<candidate>.html`` into ``out_dir`` (created) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{c.candidate.run_id}-vs-{c.reference.run_id}")
    path = out_dir / f"compare-{safe}.html"
    path.write_text(render_html(c), encoding="utf-8")
    return path
