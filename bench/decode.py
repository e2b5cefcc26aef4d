"""Kite binary decoder benchmark, run by ``make bench`` as ``.venv/bin/python bench/decode.py [--quick] [--json]``.

Options: ``--frames N`` (per mode), ``--packets N`` (per frame), ``--repeat N`` (passes per parser), ``--verbose``
(detail tables on standard error).

One run builds the same frames for both parsers (fixed seed, outside every timing) and measures, interleaved so that
drift in machine speed hits both alike:

* the official parser, ``KiteTicker._parse_binary`` of the installed ``kiteconnect`` (an instance that never connects);
* ours, ``trader.adapters.kite.decoder.decode_frame`` (Ticks in paise plus 5-level depth), the daemon's hot path;
* ours, ``decode_to_dicts`` (the official parser's output shape), for information.

Frames are full mode (184-byte packets, the case the ≥ 5x goal is about) and, for information, quote mode (44 bytes):
NFO option tokens, prices on the 0.05-rupee grid, depth around the last price, plausible volumes, OI and times. The
rate is packets per second of the best repetition (the least disturbed one); the ratio is ours / official. Before
timing, the frames are checked to decode to the same values in both parsers.

Standard output is one line per figure (ours) with its baseline (the official parser, same run) and the ratio (see
``bench/benchlib.py``); the header and the ≥ 5x verdict go to standard error.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import platform
import random
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchlib import Figure, emit, note
from kiteconnect import KiteTicker

from trader.adapters.kite.decoder import decode_frame, decode_to_dicts

SEED = 20_261_124
GOAL = 5.0
FULL_FORMAT = struct.Struct(">16I" + "IIH2x" * 10)  # written here, independently of the decoder's layouts
QUOTE_FORMAT = struct.Struct(">11I")


def build_frames(frames: int, packets: int, *, full: bool, seed: int = SEED) -> list[bytes]:
    """``frames`` frames of ``packets`` packets each, for a universe of 2,000 NFO option contracts."""
    rnd = random.Random(seed)
    tokens = [(rnd.randrange(10_000, 2_000_000) << 8) | 2 for _ in range(2_000)]  # segment 2 = NFO
    session_start = 1_795_151_700  # an epoch second on a trading morning
    out = []
    for f in range(frames):
        parts = [struct.pack(">H", packets)]
        for _ in range(packets):
            token = rnd.choice(tokens)
            last = rnd.randrange(1, 60_000) * 5  # paise, 0.05-rupee ticks up to 3,000 rupees
            lot = rnd.choice((25, 65, 75, 15, 20))
            close = max(last + rnd.randrange(-4_000, 4_000) * 5, 5)
            quote = (
                token, last, lot * rnd.randrange(1, 20), max(last + rnd.randrange(-50, 50) * 5, 5),
                lot * rnd.randrange(0, 400_000), lot * rnd.randrange(0, 50_000), lot * rnd.randrange(0, 50_000),
                max(close + rnd.randrange(-200, 200) * 5, 5), last + rnd.randrange(0, 400) * 5,
                max(last - rnd.randrange(0, 400) * 5, 5), close,
            )  # fmt: skip
            if not full:
                packet = QUOTE_FORMAT.pack(*quote)
            else:
                now = session_start + f
                oi = lot * rnd.randrange(0, 200_000)
                levels: list[int] = []
                for side in (-1, 1):
                    for level in range(1, 6):
                        price = max(last + side * level * 5, 5)
                        levels += [lot * rnd.randrange(1, 200), price, rnd.randrange(1, 40)]
                packet = FULL_FORMAT.pack(*quote, now - rnd.randrange(0, 3), oi, oi + lot * 100, oi, now, *levels)
            parts.append(struct.pack(">H", len(packet)))
            parts.append(packet)
        out.append(b"".join(parts))
    return out


@dataclass
class Result:
    name: str
    best_s: float
    packets: int

    @property
    def rate(self) -> float:
        return self.packets / self.best_s

    @property
    def us_per_packet(self) -> float:
        return self.best_s / self.packets * 1e6


def measure(parsers: dict[str, Callable[[bytes], Any]], frames: list[bytes], packets: int, repeat: int) -> list[Result]:
    """Best wall time over ``repeat`` passes of each parser over all frames; the passes alternate between parsers."""
    best = dict.fromkeys(parsers, float("inf"))
    for _ in range(repeat):
        for name, parse in parsers.items():
            gc.collect()  # start each pass with the same heap state; the collector stays enabled, as in production
            start = time.perf_counter()
            for frame in frames:
                parse(frame)
            best[name] = min(best[name], time.perf_counter() - start)
    return [Result(name, best[name], packets * len(frames)) for name in parsers]


def check_same_values(official: Callable[[bytes], Any], frames: list[bytes]) -> None:
    for frame in frames[:5]:
        if decode_to_dicts(frame) != official(frame):
            sys.exit("decode_to_dicts disagrees with the official parser on the benchmark frames")
        decoded = decode_frame(frame, received_ns=0)
        prices = [t.last_price / 100 for t in decoded.ticks]
        if decoded.malformed or prices != [d["last_price"] for d in official(frame)]:
            sys.exit("decode_frame disagrees with the official parser on the benchmark frames")


def print_table(title: str, results: list[Result]) -> None:
    base = results[0].rate
    note(title)
    note(f"  {'parser':<44}{'packets/s':>14}{'µs/packet':>12}{'vs official':>14}")
    for r in results:
        note(f"  {r.name:<44}{r.rate:>14,.0f}{r.us_per_packet:>12.2f}{r.rate / base:>13.2f}x")
    note()


def figures(mode: str, results: list[Result]) -> list[Figure]:
    official, *ours = results
    return [Figure(f"{r.name}, {mode}", r.rate, "packets/s", official.name, official.rate) for r in ours]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller run (a few seconds)")
    parser.add_argument("--frames", type=int, help="frames per mode (default 150, quick 20)")
    parser.add_argument("--packets", type=int, default=200, help="packets per frame (default 200)")
    parser.add_argument("--repeat", type=int, help="passes per parser; the best counts (default 5, quick 3)")
    parser.add_argument("--json", action="store_true", help="then print the results as one JSON object (last line)")
    parser.add_argument("--verbose", action="store_true", help="detail tables on standard error")
    args = parser.parse_args(argv)
    frames_n = args.frames or (20 if args.quick else 150)
    repeat = args.repeat or (3 if args.quick else 5)
    packets = args.packets

    ticker = KiteTicker("key", "token")  # never connected: only its parser is used
    official = ticker._parse_binary
    parsers: dict[str, Callable[[bytes], Any]] = {
        "official KiteTicker._parse_binary": official,
        "ours decode_frame (Tick + depth)": lambda frame: decode_frame(frame, received_ns=0),
        "ours decode_to_dicts (official shape)": decode_to_dicts,
    }

    note(f"bench/decode.py — Kite binary decoder: {frames_n} frames x {packets} packets per mode, best of {repeat} "
         f"passes, seed {SEED}; {platform.python_implementation()} {platform.python_version()} on "
         f"{platform.machine()}, kiteconnect {importlib.metadata.version('kiteconnect')}")
    started = time.perf_counter()
    full_frames = build_frames(frames_n, packets, full=True)
    quote_frames = build_frames(frames_n, packets, full=False)
    check_same_values(official, full_frames)
    check_same_values(official, quote_frames)

    full = measure(parsers, full_frames, packets, repeat)
    quote = measure(parsers, quote_frames, packets, repeat)
    if args.verbose:
        print_table("Full mode (184-byte packets with depth):", full)
        print_table("Quote mode (44-byte packets), for information:", quote)
    ratio = full[1].rate / full[0].rate
    verdict = "met" if ratio >= GOAL else "NOT met"
    note(f"full-mode ratio decode_frame / official: {ratio:.1f}x (goal >= {GOAL:.0f}x: {verdict}); "
         f"run time {time.perf_counter() - started:.1f} s")
    rows = figures("full mode (184-byte packets)", full) + figures("quote mode (44-byte packets)", quote)
    results = {
        "python": platform.python_version(),
        "kiteconnect": importlib.metadata.version("kiteconnect"),
        "frames": frames_n, "packets_per_frame": packets, "repeat": repeat, "seed": SEED, "goal": GOAL,
        "full_mode_ratio": round(ratio, 4),
        "results": {mode: [{"parser": r.name, "packets": r.packets, "best_s": round(r.best_s, 6),
                            "packets_per_s": round(r.rate, 1)} for r in rows_]
                    for mode, rows_ in (("full", full), ("quote", quote))},
    }
    emit(rows, results if args.json else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
