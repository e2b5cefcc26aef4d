"""trader: event-driven options-trading daemon for Indian index options."""

__version__ = "0.1.0"
