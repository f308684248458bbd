"""A table's numbers: each seed's value from its metrics file, per-cell summaries, paired tests.

A cell's value per seed is a key of its metrics file, or (``ladder:<test>``) one seed's
result at a test distortion in an evaluation file; the cell reports the mean and sample
standard deviation (ddof=1) over seeds. Comparisons pair two cells on the seeds they share
(:mod:`robustkd.report.stats`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustkd.report.stats import format_paired, paired_test
from robustkd.report.tables.spec import Cell, TableSpec

__all__ = ["compare", "read_value", "summarise"]

_SEED_IN_PATH = re.compile(r"(?:^|/)seed(\d+)(?:/|$)")


def _seed_of(path: str, metrics: Mapping[str, Any], position: int) -> int:
    """A metrics file's seed: its ``seed`` field, else ``seed<k>`` in its path, else position."""
    if isinstance(metrics.get("seed"), int):
        return int(metrics["seed"])
    match = _SEED_IN_PATH.search(Path(path).as_posix())
    return int(match.group(1)) if match else position


def _read_metrics(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: metrics file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: malformed metrics file ({exc})") from None


def read_value(
    path: str, data: Mapping[str, Any], metric: str, seed: int | None
) -> tuple[str, float]:
    """Read one seed's value from a metrics file's content, and the key the audit reads it by.

    Args:
        path: The file (named in errors).
        data: Its parsed JSON.
        metric: A key of the file (``top1``), or ``ladder:<test>``: the ``top1`` of the
            result of ``seed`` at test distortion ``<test>`` in an evaluation file
            (``{"results": [{"seed", "distortion", "top1", ...}, ...]}``).
        seed: The seed (needed for ``ladder:``).

    Returns:
        ``(key, value)``: ``key`` is ``metric`` itself, or ``results.<i>.top1`` for a ladder
        result, as :mod:`robustkd.audit` reads it back.

    Raises:
        KeyError: The file holds no such value (the message names the file).
    """
    if metric.startswith("ladder:"):
        test = metric.removeprefix("ladder:")
        for i, r in enumerate(data.get("results", [])):
            if r.get("seed") == seed and r.get("distortion") == test:
                return f"results.{i}.top1", float(r["top1"])
        raise KeyError(f"{path}: no result for seed {seed} at {test}")
    if metric not in data:
        raise KeyError(f"{path}: no {metric!r} in the metrics file")
    return metric, float(data[metric])


def summarise(spec: TableSpec, cells: Sequence[Cell]) -> pd.DataFrame:
    """One row per cell: its mean, sample std and n over seeds, and per seed the value read.

    Columns: ``row``, ``column``, ``metric``, ``mean``, ``std``, ``n`` and, as JSON lists,
    ``values``, ``seeds``, ``metrics`` (the files) and ``keys`` (what the audit reads).

    Raises:
        FileNotFoundError: A metrics file is missing (the message names it).
        ValueError: A metrics file is not JSON.
        KeyError: A metrics file lacks the value.
    """
    rows = []
    cache: dict[str, dict[str, Any]] = {}
    for cell in cells:
        read = []
        for p in cell.metrics:
            if p not in cache:
                cache[p] = _read_metrics(p)
            read.append(cache[p])
        if cell.seeds is not None:
            seeds = [int(x) for x in cell.seeds]
        else:
            seeds = [
                _seed_of(p, m, i) for i, (p, m) in enumerate(zip(cell.metrics, read, strict=True))
            ]
        keys, values = [], []
        for path, m, seed in zip(cell.metrics, read, seeds, strict=True):
            key, value = read_value(path, m, cell.key or spec.metric, seed)
            keys.append(key)
            values.append(value)
        rows.append(
            {
                "row": cell.row,
                "column": cell.column,
                "metric": spec.metric,
                "mean": float(np.mean(values)) if values else math.nan,
                # Sample standard deviation across seeds (ddof=1), the spread a reader expects.
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "n": len(values),
                "values": json.dumps(values),
                "seeds": json.dumps(seeds),
                "metrics": json.dumps(cell.metrics),
                "keys": json.dumps(keys),
            }
        )
    return pd.DataFrame(rows)


def compare(spec: TableSpec, df: pd.DataFrame) -> list[dict[str, Any]]:
    """Run every comparison of ``spec`` on the cells present (absent cells: no result)."""
    by_cell = {
        (r.row, r.column): dict(zip(json.loads(r.seeds), json.loads(r.values), strict=True))
        for r in df.itertuples()
    }
    out = []
    for comp in spec.comparisons:
        a, b = by_cell.get(comp.a), by_cell.get(comp.b)
        seeds = sorted(set(a) & set(b)) if a is not None and b is not None else []
        result = None
        if seeds:
            res = paired_test([a[s] for s in seeds], [b[s] for s in seeds], seeds=seeds)
            result = {**res.as_dict(), "text": format_paired(res)}
        out.append(
            {"row": comp.row, "column": comp.column, "a": comp.a, "b": comp.b, "result": result}
        )
    return out
