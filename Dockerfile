FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADER_MODE=paper \
    TRADER_DATA_DIR=/var/lib/trader

RUN useradd --system --create-home --home-dir /home/trader --uid 10001 trader \
    && mkdir -p /var/lib/trader && chown trader /var/lib/trader

WORKDIR /app
COPY pyproject.toml README.md ./
COPY trader ./trader
COPY configs ./configs
RUN pip install --no-cache-dir .

USER trader
# SIGTERM is the graceful stop: no new intents, in-flight orders finish, summary logged, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["trader"]
CMD ["run"]
