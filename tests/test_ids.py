"""Ids double as Kite order tags: ≤ 20 alphanumerics, unique within a run and across restarts."""

from __future__ import annotations

import pytest

from trader.ids import IdFactory, base36, is_valid_tag

NS = 1_000_000_000


def test_ids_are_valid_tags_and_unique() -> None:
    ids = IdFactory(1_795_000_000 * NS)
    made = [ids.next("I") for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(is_valid_tag(i) and len(i) <= 20 for i in made)


def test_a_restart_a_second_later_never_reuses_an_id() -> None:
    before = {IdFactory(1_795_000_000 * NS).next("I") for _ in range(1)}
    after = {IdFactory(1_795_000_001 * NS).next("I") for _ in range(1)}
    assert before.isdisjoint(after)


def test_tag_validation() -> None:
    assert is_valid_tag("A" * 20)
    assert not is_valid_tag("A" * 21)
    assert not is_valid_tag("abc-123")
    assert not is_valid_tag("")
    with pytest.raises(ValueError, match="kind"):
        IdFactory(0).next("I-")


def test_base36() -> None:
    assert base36(35, 2) == "0Z"
    assert base36(36, 2) == "10"
