"""Run-folder rows and manifests to and from JSON and Parquet, every whole-file write atomic (trader/runs/model.py
is the shape; store.py writes and reads whole run folders with these)."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from trader.events import Side
from trader.runs.model import (
    FORMAT_VERSION,
    DataSource,
    RunManifest,
    StrategyRun,
)


class RunFormatError(ValueError):
    """A run folder that cannot be read: the message names the file (and the field) and what is wrong."""


# --- JSON of rows and manifests -------------------------------------------------------------------------------------


_NAMES: dict[type[Any], tuple[str, ...]] = {}
_KINDS: dict[type[Any], dict[str, object]] = {}


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """A row dataclass's fields, in order: its JSON keys and its Parquet columns."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def row_dict(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in field_names(type(row))}


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _field_kinds(cls: type[Any]) -> dict[str, object]:
    kinds = _KINDS.get(cls)
    if kinds is None:
        hints = typing.get_type_hints(cls)
        kinds = _KINDS[cls] = {name: hints[name] for name in field_names(cls)}
    return kinds




def _check_value(name: str, kind: object, value: object) -> None:
    """A field's JSON value of the row's own type (a damaged line must not reach the money arithmetic)."""
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"field {name!r} must be a 64-bit integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"field {name!r} must be a number, got {value!r}")
    elif not isinstance(value, str):  # str and Side (checked by Side() below)
        raise ValueError(f"field {name!r} must be text, got {value!r}")


def row_from(cls: type[Any], data: Mapping[str, Any]) -> Any:
    kinds = _field_kinds(cls)
    values = {name: data[name] for name in field_names(cls) if name in data}
    for name, value in values.items():
        _check_value(name, kinds[name], value)
    if "side" in values:
        values["side"] = Side(values["side"])
    return cls(**values)


def manifest_dict(manifest: RunManifest) -> dict[str, Any]:
    document = dataclasses.asdict(manifest)
    document["strategies"] = [dataclasses.asdict(s) for s in manifest.strategies]
    document["underlyings"] = list(manifest.underlyings)
    return document


_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "mode": (str,), "status": (str,), "initial_capital": (int,), "started_ns": (int,),
    "ended_ns": (int,), "wall_started_ns": (int,), "wall_ended_ns": (int,), "venue": (str,), "fill_model": (str,),
    "strategies": (list,), "underlyings": (list,), "data": (dict,), "settings": (dict,), "code_version": (str,),
    "stop_reason": (str,), "format_version": (int,),
}
_REQUIRED = ("run_id", "mode", "status", "initial_capital", "started_ns")


def manifest_from(document: object, where: Path) -> RunManifest:
    """A ``RunManifest`` from run.json's JSON; a ``RunFormatError`` naming the file and the field otherwise."""
    if not isinstance(document, dict):
        raise RunFormatError(f"{where}: expected a JSON object, got {type(document).__name__}")
    for name in _REQUIRED:
        if name not in document:
            raise RunFormatError(f"{where}: field {name!r} is missing")
    for name, value in document.items():
        allowed = _MANIFEST_TYPES.get(name)
        if allowed is None:
            continue  # a field from a newer writer: ignored
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise RunFormatError(f"{where}: field {name!r} must be {allowed[0].__name__}, got {value!r}")
    if document["mode"] not in ("backtest", "paper", "live"):
        raise RunFormatError(f"{where}: field 'mode' must be backtest, paper or live, got {document['mode']!r}")
    if document["status"] not in ("running", "complete", "failed"):
        raise RunFormatError(f"{where}: field 'status' must be running, complete or failed, "
                             f"got {document['status']!r}")
    version = document.get("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise RunFormatError(f"{where}: field 'format_version' is {version}; this trader reads up to "
                             f"{FORMAT_VERSION}: upgrade trader to read it")
    try:
        strategies = tuple(StrategyRun(**s) for s in document.get("strategies", []))
    except TypeError as exc:
        raise RunFormatError(f"{where}: field 'strategies': {exc}") from None
    try:
        data = DataSource(**document.get("data", {"kind": "synthetic"}))
    except TypeError as exc:
        raise RunFormatError(f"{where}: field 'data': {exc}") from None
    known = {f.name for f in fields(RunManifest)}
    values = {k: v for k, v in document.items() if k in known}
    values.update(strategies=strategies, data=data, underlyings=tuple(document.get("underlyings", [])))
    return RunManifest(**values)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: Path, document: object) -> None:
    atomic_write(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode())


# --- Parquet tables ------------------------------------------------------------------------------------------------


def _arrow_type(annotation: object) -> Any:
    import pyarrow as pa  # noqa: PLC0415 - pyarrow loads only when a table is written or read

    if annotation is int:
        return pa.int64()
    if annotation is float:
        return pa.float64()
    return pa.string()  # str and Side (a StrEnum)


def _schema(cls: type[Any]) -> Any:
    import pyarrow as pa  # noqa: PLC0415

    hints = typing.get_type_hints(cls)
    return pa.schema([(name, _arrow_type(hints[name])) for name in field_names(cls)])


def write_table(path: Path, cls: type[Any], rows: Iterable[Any]) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    names = field_names(cls)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for row in rows:
        for name in names:
            value = getattr(row, name)
            columns[name].append(value.value if isinstance(value, Side) else value)
    table = pa.table(columns, schema=_schema(cls))
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_table(path: Path, cls: type[Any]) -> tuple[Any, ...]:
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid, OSError)
        raise RunFormatError(f"{path}: not a readable Parquet table ({exc})") from None
    missing = [name for name in field_names(cls) if name not in table.column_names]
    if missing:
        raise RunFormatError(f"{path}: column(s) {', '.join(missing)} missing")
    try:
        return tuple(row_from(cls, row) for row in table.to_pylist())
    except (ValueError, TypeError) as exc:
        raise RunFormatError(f"{path}: {exc}") from None
