"""``trader report RUN --png``: each chart of the report as a PNG file, rendered by plotly's own static export.

Kaleido (the ``png`` extra: ``pip install 'trader[png]'``) drives a local Chrome or Chromium (found on ``PATH``, e.g.
Debian's ``/usr/bin/chromium``, or named by the ``BROWSER_PATH`` environment variable); it loads plotly.js from the
installed plotly package and MathJax is off, so the export needs no network either.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from trader.report.charts import Chart

WIDTH = 1200
SCALE = 1.0
TIMEOUT_S = 120.0  # per image; a loaded 2-core machine starts Chromium slowly
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class PngExportError(RuntimeError):
    """The charts could not be exported; the message says what to install or set."""


def find_browser() -> str | None:
    """``BROWSER_PATH`` if set, else the first Chrome/Chromium on ``PATH``."""
    given = os.environ.get("BROWSER_PATH")
    if given:
        return given
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def export_png(charts: list[Chart], out_dir: Path) -> list[Path]:
    """Write ``<chart name>.png`` for each chart into ``out_dir``; returns the files in the charts' order."""
    try:
        import kaleido  # noqa: PLC0415 - the optional png extra
    except ImportError:
        raise PngExportError("PNG export needs kaleido: pip install 'trader[png]' (it drives a local Chrome or "
                             "Chromium, e.g. Debian's chromium package)") from None
    browser = find_browser()
    if browser is None:
        raise PngExportError("PNG export needs Chrome or Chromium: install it (Debian: apt-get install chromium) or "
                             "set BROWSER_PATH to its executable")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{chart.name}.png" for chart in charts]
    jobs: list[dict[str, Any]] = [
        {"fig": chart.figure, "path": path,
         "opts": {"format": "png", "width": WIDTH, "height": int(chart.figure.layout.height or 450), "scale": SCALE}}
        for chart, path in zip(charts, paths, strict=True)]
    try:
        kaleido.write_fig_from_object_sync(jobs, kopts={"mathjax": False, "n": 1, "timeout": TIMEOUT_S,
                                                        "path": browser}, cancel_on_error=True)
    except Exception as exc:  # kaleido and choreographer raise their own kinds; all mean "no PNG"
        raise PngExportError(f"PNG export with {browser} failed: {type(exc).__name__}: {exc}") from exc
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise PngExportError(f"PNG export wrote no file for {', '.join(missing)}")
    return paths
