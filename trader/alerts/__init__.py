"""Alerts to the operator (Telegram, a JSON webhook) and Telegram commands, all off the trading path.

``rules`` (event → Alert, pure), ``outbox`` (queue, rate limit, dedup, retries per destination), ``telegram`` and
``webhook`` (the destinations), ``runtime`` (the wiring into a running App). See docs/alerts.md.
"""
