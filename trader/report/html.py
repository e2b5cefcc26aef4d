"""``trader report RUN``: one self-contained HTML file per run (docs/report.md).

The plotly.js bundle is embedded inline (``plotly.offline.get_plotlyjs``): the file opens with no network, and has
no ``<script src>`` or stylesheet link at all. Each chart's figure is a ``<script type="application/json">`` block
(the figure's JSON, with ``<``, ``>`` and ``&`` written as ``\\u003c``... so no text in it can close the script)
that one small inline script hands to ``Plotly.newPlot``. Tables are plain HTML; every text that comes from the run
(symbols, reasons, parameters, paths) is HTML-escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from plotly.offline import get_plotlyjs

from trader.report.charts import Chart, charts
from trader.report.fill_metrics import SlippageStats
from trader.report.summary import (
    CHARGE_LABELS,
    RunView,
    bps,
    check_figure,
    check_status,
    inr,
    ist_time,
    sharpe_note,
    summary_rows,
    view,
)
from trader.runs.model import RunData

REPORT_FILE = "report.html"
MODELLED_BANNER = "option prices are modelled from the index: "
INCOMPLETE_BANNER = "run did not stop cleanly: tables rebuilt from the event log"
NO_TRADES = "no trades"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1rem 1.5rem 3rem; color: #1f2328; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.sub { color: #6e7781; margin-top: 0; }
.banner { padding: .75rem 1rem; border-radius: 6px; margin: .75rem 0; font-weight: 600; }
.banner.modelled { background: #fff8c5; border: 1px solid #d4a72c; }
.banner.incomplete { background: #ffebe9; border: 1px solid #cf222e; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.skip { color: #6e7781; } .verdict { font-weight: 600; }
.pos { color: #1a7f37; } .neg { color: #cf222e; }
.chart { width: 100%; min-height: 420px; }
.scroll { overflow-x: auto; } #trades td { white-space: nowrap; }
.empty { color: #6e7781; font-style: italic; }
pre { white-space: pre-wrap; margin: 0; font-size: .85rem; }
.note { color: #6e7781; font-size: .85rem; }
"""

_BOOT = """
document.querySelectorAll('script[type="application/json"][data-chart]').forEach(function (block) {
  var figure = JSON.parse(block.textContent);
  Plotly.newPlot(block.getAttribute('data-chart'), figure.data, figure.layout,
                 {responsive: true, displaylogo: false});
});
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def script_json(text: str) -> str:
    """JSON text made safe inside ``<script>``: ``<``, ``>`` and ``&`` only occur inside JSON strings, where their
    ``\\uXXXX`` escapes mean the same characters."""
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _inline_js(code: str) -> str:
    """Script text that cannot end its ``<script>`` early: ``</script`` can only occur inside a string or regex
    literal, where ``<\\/script`` means the same."""
    return code.replace("</script", "<\\/script")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: frozenset[int] = frozenset(),
           table_id: str = "", raw: frozenset[int] = frozenset()) -> str:
    """A table; cells are escaped unless their column is in ``raw`` (cells built here from escaped parts)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ' class="num"' if i in numeric else ""
            cells.append(f"<td{css}>{cell if i in raw else _e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _banners(run: RunData) -> str:
    parts = []
    data = run.manifest.data
    if data.modelled_options:
        parts.append(f'<div class="banner modelled" id="banner-modelled">{_e(MODELLED_BANNER + data.model_note)}'
                     "</div>")
    if not run.complete:
        parts.append(f'<div class="banner incomplete" id="banner-incomplete">{_e(INCOMPLETE_BANNER)}</div>')
    return "".join(parts)


def _summary(v: RunView) -> str:
    return (_table(("figure", "value"), summary_rows(v), numeric=frozenset({1}), table_id="summary")
            + f'<p class="note">Sharpe and Sortino: {_e(sharpe_note(v))}. Definitions: docs/metrics-definitions.md.'
              "</p>")


def _checklist(v: RunView) -> str:
    rows = []
    for item in v.checklist.items:
        status = check_status(item)
        css = {"pass": "pass", "fail": "fail"}.get(status, "skip")
        rows.append((item.requirement, check_figure(item), f'<span class="{css}">{_e(status)}</span>', item.detail))
    verdict = v.verdict
    css = "pass" if verdict.startswith("PASS") else "fail"
    return (_table(("requirement", "figure", "result", "detail"), rows, table_id="checklist", raw=frozenset({2}))
            + f'<p class="verdict {css}" id="verdict">{_e(verdict)}</p>')


def _signed(paise: int) -> str:
    css = "pos" if paise > 0 else "neg" if paise < 0 else ""
    return f'<span class="{css}">{_e(inr(paise))}</span>'


def _trades(v: RunView) -> str:
    trades = sorted(v.run.trades, key=lambda t: (t.entry_ns, t.exit_ns))
    if not trades:
        return f'<p class="empty" id="no-trades">{_e(NO_TRADES)}</p>'
    rows = [(str(i), t.strategy_id, t.tradingsymbol, t.direction, str(t.quantity), ist_time(t.entry_ns),
             ist_time(t.exit_ns), inr(t.entry_price), inr(t.exit_price), _signed(t.gross), inr(t.charges),
             _signed(t.net), t.exit_reason)
            for i, t in enumerate(trades, 1)]
    return ('<div class="scroll">'
            + _table(("#", "strategy", "contract", "direction", "quantity", "entry (IST)", "exit (IST)",
                      "entry price", "exit price", "gross", "charges", "net", "exit reason"), rows, table_id="trades",
                     numeric=frozenset({0, 4, 7, 8, 9, 10, 11}), raw=frozenset({9, 11}))
            + "</div>")


def _slippage_tables(v: RunView) -> str:
    s = v.metrics.slippage
    headers = ("", "fills", "mean bps", "median bps", "p90 bps", "worst bps", "cost")
    num = frozenset(range(1, 7))

    def row(label: str, st: SlippageStats) -> tuple[str, ...]:
        return (label, str(st.fills), bps(st.mean_bps), bps(st.median_bps), bps(st.p90_bps), bps(st.worst_bps),
                inr(st.cost_paise))

    by_type = [row("all fills", s.overall), *(row(k, st) for k, st in s.by_order_type.items())]
    by_hour = [row(f"{h:02d}:00–{h:02d}:59 IST", st) for h, st in s.by_ist_hour.items()]
    return ("<h3>by order type</h3>" + _table(headers, by_type, numeric=num, table_id="slippage-by-type")
            + "<h3>by IST hour of the fill</h3>"
            + (_table(headers, by_hour, numeric=num, table_id="slippage-by-hour") if by_hour
               else '<p class="empty">no fills</p>')
            + '<p class="note">bps = (fill price − expected price) × side / expected × 10 000: positive is worse '
              "than expected. Each fill counted once.</p>")


def _charges(v: RunView) -> str:
    c = v.metrics.charges
    rows = [(CHARGE_LABELS[k], inr(p)) for k, p in c.as_dict().items()]
    rows += [("total (by kind)", inr(c.total)), ("recorded by the run", inr(c.recorded)),
             ("unattributed (broker rounding)", inr(c.unattributed))]
    return _table(("kind", "amount"), rows, numeric=frozenset({1}), table_id="charges")


def _provenance(v: RunView) -> str:
    m = v.run.manifest
    d = m.data
    data_text = d.kind + (f" {d.path}" if d.path else "")
    rows: list[tuple[str, str]] = [
        ("run id", m.run_id), ("mode", m.mode), ("status", m.status + ("" if v.run.complete else
                                                                         " (rebuilt from events.jsonl)")),
        ("started (IST, event time)", ist_time(m.started_ns)), ("ended (IST, event time)", ist_time(m.ended_ns)),
        ("stop reason", m.stop_reason or "—"), ("venue", m.venue or "—"), ("fill model", m.fill_model or "—"),
        ("underlyings", ", ".join(m.underlyings) or "—"), ("data", data_text),
        ("instruments", d.instruments or "—"),
        ("option prices", ("modelled from the index: " + d.model_note) if d.modelled_options else "observed"),
    ]
    if d.bar_path:
        rows.append(("intrabar path (candles)", d.bar_path))
    rows += [("code version", m.code_version or "—"),
             ("recorded", f"{len(v.run.signals)} signals, {len(v.run.orders)} orders, {len(v.run.fills)} fills, "
                          f"{len(v.run.equity)} equity samples, {len(v.run.trades)} trades")]
    strategies = [(s.strategy_id, s.name, f"<pre>{_e(json.dumps(s.params, indent=1, sort_keys=True, default=str))}"
                                          "</pre>") for s in m.strategies]
    return (_table(("", ""), rows, table_id="provenance")
            + "<h3>strategies</h3>"
            + (_table(("strategy id", "name", "parameters"), strategies, table_id="strategies", raw=frozenset({2}))
               if strategies else '<p class="empty">none recorded</p>'))


def _chart_block(chart: Chart) -> str:
    div = f"chart-{chart.name}"
    return (f'<h2>{_e(chart.title)}</h2><div class="chart" id="{_e(div)}"></div>'
            f'<script type="application/json" data-chart="{_e(div)}" id="figure-{_e(chart.name)}">'
            f"{script_json(chart.figure.to_json())}</script>")


def render(v: RunView) -> str:
    """The whole page as text."""
    run = v.run
    m = run.manifest
    title = f"trader report — {m.run_id}"
    sub = (f"{m.mode} run, {ist_time(m.started_ns)} → {ist_time(m.ended_ns)} IST · "
           f"{', '.join(s.strategy_id for s in m.strategies) or 'no strategy recorded'}")
    body = [
        f"<h1>{_e(title)}</h1>", f'<p class="sub">{_e(sub)}</p>', _banners(run),
        "<h2>Summary</h2>", _summary(v),
        "<h2>Go-live checklist</h2>", _checklist(v),
        *(_chart_block(c) for c in charts(v)),
        f"<h2>Trades ({len(run.trades)})</h2>", _trades(v),
        "<h2>Slippage</h2>", _slippage_tables(v),
        "<h2>Charges by kind</h2>", _charges(v),
        "<h2>Provenance</h2>", _provenance(v),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_STYLE}</style>"
            f"<script>{_inline_js(get_plotlyjs())}</script></head><body>\n"
            + "\n".join(body)
            + f"\n<script>{_BOOT}</script></body></html>\n")


def write_html(v: RunView, out: Path) -> Path:
    """Write the page to ``out`` (a file, or an existing directory that gets ``report.html``); returns the file.
    Written to a temporary name first, then renamed: a reader never sees half a page."""
    path = out / REPORT_FILE if out.is_dir() else out
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(v), encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(run: RunData, out: Path) -> Path:
    """The run's report (metrics and checklist computed from what it recorded) written to ``out``."""
    return write_html(view(run), out)
