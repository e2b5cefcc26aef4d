"""The simulator's packet encoder against our decoder and the official KiteTicker parser."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kiteconnect import KiteTicker as OfficialTicker

from trader.adapters.kite.decoder import decode_frame
from trader.events import Tick
from trader.sim.encode import HEARTBEAT, DayStats, Mode, encode_frame, encode_packet

T = 1_795_151_700 * 1_000_000_000
NFO_TOKEN = 12_345 << 8 | 2  # low byte 2 = NFO segment (divisor 100)
INDEX_TOKEN = 256_265  # NIFTY 50: low byte 9 = indices

paise = st.integers(5, 5_000_000).map(lambda p: p - p % 5)
qty = st.integers(0, 100_000)


@given(last=paise, bid=paise, ask=paise, bid_qty=qty, ask_qty=qty, volume=qty, oi=qty,
       mode=st.sampled_from(["ltp", "quote", "full"]))
def test_tradeable_packets_round_trip(last: int, bid: int, ask: int, bid_qty: int, ask_qty: int, volume: int,
                                      oi: int, mode: Mode) -> None:
    tick = Tick(ts_ns=T, instrument_token=NFO_TOKEN, last_price=last, volume=volume, oi=oi, bid=bid,
                bid_qty=bid_qty, ask=ask, ask_qty=ask_qty, exchange_ts_ns=T)
    day = DayStats(open=last, high=last + 100, low=max(last - 100, 5), close=last, average_price=last)
    frame = encode_frame([encode_packet(tick, mode, day=day)])
    [decoded] = decode_frame(frame, received_ns=T).ticks
    [official] = OfficialTicker("k", "t")._parse_binary(frame)
    assert decoded.instrument_token == NFO_TOKEN and decoded.last_price == last
    assert official["last_price"] == last / 100
    if mode != "ltp":
        assert decoded.volume == volume == official["volume_traded"]
        assert official["ohlc"] == {"open": last / 100, "high": (last + 100) / 100, "low": max(last - 100, 5) / 100,
                                    "close": last / 100}
    if mode == "full":
        assert (decoded.bid, decoded.bid_qty, decoded.ask, decoded.ask_qty, decoded.oi) == (
            bid, bid_qty, ask, ask_qty, oi)
        assert official["depth"]["buy"][0] == {"price": bid / 100, "quantity": bid_qty, "orders": 1}
        assert official["depth"]["sell"][1] == {"price": 0.0, "quantity": 0, "orders": 0}
        assert decoded.exchange_ts_ns == T


def test_index_packets_and_mixed_frames() -> None:
    index = Tick(ts_ns=T, instrument_token=INDEX_TOKEN, last_price=2_600_050, exchange_ts_ns=T)
    option = Tick(ts_ns=T, instrument_token=NFO_TOKEN, last_price=10_005, bid=10_000, bid_qty=650, ask=10_010,
                  ask_qty=130)
    day = DayStats(open=2_590_000, high=2_605_000, low=2_585_000, close=2_595_000)
    frame = encode_frame([encode_packet(index, "full", index=True, day=day), encode_packet(option, "quote"),
                          encode_packet(option, "ltp")])
    ticks = decode_frame(frame, received_ns=T).ticks
    assert [(t.instrument_token, t.last_price) for t in ticks] == [(INDEX_TOKEN, 2_600_050), (NFO_TOKEN, 10_005),
                                                                   (NFO_TOKEN, 10_005)]
    official = OfficialTicker("k", "t")._parse_binary(frame)
    assert [p["mode"] for p in official] == ["full", "quote", "ltp"]
    assert official[0]["tradable"] is False and official[0]["change"] == (2_600_050 - 2_595_000) / 2_595_000 * 100
    assert decode_frame(HEARTBEAT, received_ns=T).heartbeat
