"""The run report: metrics (pure), the go-live checklist, and their rendering (``trader report RUN``: the terminal
summary, one self-contained HTML page, PNG charts; docs/report.md)."""
