"""Measurements made once on real hardware and shipped with the package, so the chapters'
models can be checked against them on any computer.

Each file in ``minigrad/data/measured/`` is a CSV whose first lines are ``# key: value``
provenance (date, device, driver, CUDA and PyTorch versions, what was measured and how),
then a header row. They were made by the scripts in ``benchmarks/gpu/`` (which need a GPU);
``benchmarks/gpu/README.md`` has the commands and the device time they took.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

MEASURED_DIR = Path(__file__).with_name("measured")

__all__ = ["MEASURED_DIR", "Measurement", "available", "read_measurement"]


class Measurement(NamedTuple):
    """One CSV: its provenance lines as a dict and its rows as dicts (numbers as floats)."""

    meta: dict
    rows: list


def available() -> list:
    """Names of the shipped measurements (file names without ``.csv``)."""
    return sorted(p.stem for p in MEASURED_DIR.glob("*.csv"))


def _value(s: str):
    try:
        return float(s)
    except ValueError:
        return s


def read_measurement(name: str) -> Measurement:
    """Read ``minigrad/data/measured/<name>.csv``: e.g. ``read_measurement("h200_attention_dram")``."""
    path = MEASURED_DIR / f"{name}.csv"
    if not path.is_file():
        raise ValueError(f"read_measurement: no measurement {name!r}; have {available()}")
    meta, lines = {}, []
    with open(path, newline="") as f:
        for line in f:
            if line.startswith("# ") and not lines:
                key, _, value = line[2:].rstrip("\n").partition(": ")
                meta[key] = value
            else:
                lines.append(line)
    rows = [{k: _value(v) for k, v in r.items()} for r in csv.DictReader(lines)]
    return Measurement(meta, rows)
