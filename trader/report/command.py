"""What ``trader report RUN`` does once the run is read: the terminal summary, the HTML page, the PNGs.

``trader/cli.py`` finds and reads the run folder (``trader.runs.store.find_run`` / ``load_run``) and calls
``report_command``; everything here works from ``RunData`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from trader.report.charts import charts
from trader.report.html import REPORT_FILE, write_html
from trader.report.png import export_png
from trader.report.summary import view
from trader.report.terminal import print_summary
from trader.runs.model import RunData

PNG_DIR = "charts"


@dataclass(frozen=True, slots=True)
class ReportFiles:
    html: Path
    pngs: tuple[Path, ...] = ()


def report_command(run: RunData, out_dir: Path, *, png: bool, console: Console) -> ReportFiles:
    """Print the summary to ``console``, write ``out_dir/report.html`` and, with ``png``, ``out_dir/charts/*.png``.

    Raises ``trader.report.png.PngExportError`` (after the HTML is written) when the PNGs cannot be made."""
    v = view(run)
    print_summary(v, console)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = write_html(v, out_dir / REPORT_FILE)
    console.print(f"report: {html}", highlight=False, soft_wrap=True)
    pngs: tuple[Path, ...] = ()
    if png:
        pngs = tuple(export_png(charts(v), out_dir / PNG_DIR))
        console.print(f"charts: {', '.join(str(p) for p in pngs)}", highlight=False, soft_wrap=True)
    return ReportFiles(html=html, pngs=pngs)
