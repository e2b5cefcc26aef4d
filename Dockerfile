FROM python:3.11-slim

# TZ is not set on purpose: the daemon computes IST (Asia/Kolkata, from the tzdata wheel) for every market time itself.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    TRADER_MODE=paper \
    TRADER_DATA_DIR=/var/lib/trader

RUN useradd --system --create-home --home-dir /home/trader --uid 10001 trader \
    && mkdir -p /var/lib/trader && chown trader /var/lib/trader && chmod 0700 /var/lib/trader

WORKDIR /app
COPY pyproject.toml README.md ./
COPY trader ./trader
COPY configs ./configs
RUN pip install --no-cache-dir .

USER trader
VOLUME ["/var/lib/trader"]
# SIGTERM is the graceful stop: no new intents, in-flight orders finish, summary logged, exit 0 (within 9 s; give
# the container at least 20 s: `docker stop -t 20`, compose.yaml's stop_grace_period).
STOPSIGNAL SIGTERM
# GET /healthz through the CLI (the slim image has no curl): exit 0 healthy, 1 unhealthy, 3 unreachable. The URL
# comes from the same settings as `trader run` (TRADER_CONTROL__HOST / __PORT), so set the port by environment, not
# only in a --config file. The start period covers the start-up reconciliation with the broker.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
    CMD ["trader", "healthcheck", "--timeout", "8"]
ENTRYPOINT ["trader"]
CMD ["run"]
