"""Replay of recorded tick files behind the ``MarketData`` port (docs/data.md).

``schema`` (the columns and their parsing), ``checks`` (pure row validation and gap counting), ``readers`` (CSV and
Parquet, in batches), ``market`` (``ReplayMarket``: the day's instrument dump, files merged in event-time order),
``convert`` (other layouts to the schema). ``market`` imports ``pyarrow``: import it only when replaying.
"""
