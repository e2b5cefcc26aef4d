from __future__ import annotations

from pathlib import Path

from trader.risk.kill_switch import KillSwitchFile

S = 1_000_000_000


def test_the_file_trips_the_switch_checked_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "KILL"
    switch = KillSwitchFile(path)
    assert not switch.tripped(10 * S)
    path.touch()
    assert not switch.tripped(10 * S + S // 2)  # not looked at again within the second
    assert switch.tripped(11 * S)
    assert not KillSwitchFile(None).tripped(11 * S)
