"""The corruption table's values: the long frame, its completeness, the rows and the mCE.

Part of :mod:`robustkd.report.corruptions` (its docstring gives the definitions). The mCE is
defined on the 15 benchmark corruptions (:data:`robustkd.corruption_names.BENCHMARK_CORRUPTIONS`):
it, the per-severity rows and the overall mean are computed on exactly the benchmark corruptions
evaluated; an extra corruption (``speckle_noise``, ``gaussian_blur``, ``saturate``) gets its own
row and enters nothing else. Every (method, training distortion) must hold a result for every
seed, corruption and severity: a missing cell stops the table, named.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustkd.corruption_names import BENCHMARK_CORRUPTIONS
from robustkd.provenance import sha256_file
from robustkd.readback import read_json

__all__ = [
    "MCE_ROW",
    "MEAN_ROW",
    "benchmark_rows",
    "cell_entries",
    "check_complete",
    "extra_rows",
    "long_frame",
    "mce_per_seed",
    "row_values",
]

MCE_ROW = "mCE"
MEAN_ROW = "mean"
_CELL = ["method", "distortion", "seed", "corruption", "severity"]


def long_frame(files: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """One row per (method, distortion, seed, corruption, severity): ``top1`` in %.

    Args:
        files: ``(method, training distortion, corruptions.json)`` of every model.

    Returns:
        Columns method, distortion, file, index (the result's place in the file's
        ``results``), seed, corruption, severity, top1.

    Raises:
        UnreadableFileError: A file cannot be read (named).
        ValueError: A file holds no results (named).
    """
    rows = []
    for method, distortion, path in files:
        rec = read_json(path, "corruption evaluation")
        if not rec.get("results"):
            raise ValueError(f"{path}: no results")
        for i, r in enumerate(rec["results"]):
            rows.append(
                {
                    "method": method,
                    "distortion": distortion,
                    "file": str(path),
                    "index": i,
                    "seed": int(r["seed"]),
                    "corruption": str(r["corruption"]),
                    "severity": int(r["severity"]),
                    "top1": float(r["top1"]),
                }
            )
    return pd.DataFrame(rows)


def check_complete(
    df: pd.DataFrame,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
) -> None:
    """Check that every model holds exactly one result per seed, corruption and severity.

    Args:
        df: :func:`long_frame`.
        corruptions: The configured corruptions (``experiments.corruptions.corruptions``);
            default: every corruption some model holds.
        severities: The configured severities; default: every severity some model holds.

    Raises:
        ValueError: A result repeats, lies outside the configured corruptions or severities,
            or a (method, corruption, severity, seed) cell is missing; the message names the
            file, the cell and what to do.
    """
    want_c = list(corruptions) if corruptions is not None else list(dict.fromkeys(df.corruption))
    want_s = list(severities) if severities is not None else sorted(set(df["severity"]))
    seeds = sorted(set(df["seed"]))
    dup = df.duplicated(_CELL, keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise ValueError(
            f"{r.file}: two results for corruption {r.corruption!r}, severity {r.severity}, "
            f"seed {r.seed}; rerun its evaluation (snakemake --forcerun evaluate_corruptions)"
        )
    stray = df[~df["corruption"].isin(want_c) | ~df["severity"].isin(want_s)]
    if len(stray):
        r = stray.iloc[0]
        raise ValueError(
            f"{r.file}: a result for corruption {r.corruption!r}, severity {r.severity}, which "
            f"experiments.corruptions does not list (corruptions {want_c}, severities {want_s}); "
            "rerun its evaluation with this config"
        )
    for (method, distortion, path), grp in df.groupby(["method", "distortion", "file"]):
        have = set(zip(grp["seed"], grp["corruption"], grp["severity"], strict=True))
        missing = [
            (k, c, s) for c in want_c for s in want_s for k in seeds if (k, c, s) not in have
        ]
        if missing:
            k, c, s = missing[0]
            more = f" (and {len(missing) - 1} more cells)" if len(missing) > 1 else ""
            raise ValueError(
                f"{path}: no result for method {method!r} (trained on {distortion}), corruption "
                f"{c!r}, severity {s}, seed {k}{more}; the table needs every cell: rerun its "
                "evaluation (snakemake --forcerun evaluate_corruptions)"
            )


def benchmark_rows(df: pd.DataFrame) -> list[str]:
    """The benchmark corruptions present, in the files' order."""
    return [c for c in dict.fromkeys(df["corruption"]) if c in BENCHMARK_CORRUPTIONS]


def extra_rows(df: pd.DataFrame) -> list[str]:
    """The corruptions present that are not benchmark ones, in the files' order."""
    return [c for c in dict.fromkeys(df["corruption"]) if c not in BENCHMARK_CORRUPTIONS]


def _benchmark(df: pd.DataFrame) -> pd.DataFrame:
    """The benchmark corruptions' results (the mCE, severity and mean rows are on these)."""
    out = df[df["corruption"].isin(BENCHMARK_CORRUPTIONS)]
    if out.empty:
        raise ValueError(
            f"no benchmark corruption evaluated (only {sorted(set(df['corruption']))}): the "
            "mCE and the mean rows are defined on the 15 benchmark corruptions; add some to "
            "experiments.corruptions.corruptions"
        )
    return out


def mce_per_seed(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The mCE (%) of every method per seed, relative to ``baseline``, on the benchmark's.

    Only the benchmark corruptions enter (:data:`BENCHMARK_CORRUPTIONS`); extra ones are left
    out.

    Args:
        df: :func:`long_frame`.
        baseline: The reference method (mCE 100).

    Returns:
        Columns ``method``, ``seed``, ``mce``.

    Raises:
        ValueError: No benchmark corruption was evaluated, the baseline is missing, lacks a
            (distortion, seed, corruption) another method has, or has zero error on a
            corruption (CE undefined); the message names it.
    """
    df = _benchmark(df)
    if baseline not in set(df["method"]):
        raise ValueError(
            f"experiments.corruptions.baseline: {baseline!r} is not among the evaluated "
            f"methods ({sorted(set(df['method']))})"
        )
    err = (
        df.assign(err=100.0 - df["top1"])
        .groupby(["method", "distortion", "seed", "corruption"])["err"]
        .sum()
    )
    base = err.xs(baseline, level="method")
    out = []
    for (method, distortion, seed), grp in err.groupby(level=["method", "distortion", "seed"]):
        ces = []
        for (_, _, _, corruption), e in grp.items():
            key = (distortion, seed, corruption)
            if key not in base.index:
                raise ValueError(f"baseline {baseline!r} has no result for {key}")
            if base[key] == 0:
                raise ValueError(f"baseline {baseline!r} has zero error on {key}: CE undefined")
            ces.append(e / base[key])
        out.append(
            {"method": method, "distortion": distortion, "seed": seed, "mce": 100 * np.mean(ces)}
        )
    per_model = pd.DataFrame(out)
    return per_model.groupby(["method", "seed"], as_index=False)["mce"].mean()


def row_values(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per-seed values of every table row and method (``row``, ``method``, ``seed``, ``value``).

    Rows: each corruption, extra ones included (mean top-1 over severities and distortions);
    on the benchmark corruptions only, ``severity s`` (mean over corruptions and distortions),
    ``mean`` (over all) and ``mCE``.
    """
    parts = []
    per_model = df.groupby(["method", "distortion", "seed", "corruption"])["top1"].mean()
    by_c = per_model.groupby(["method", "seed", "corruption"]).mean().reset_index()
    parts.append(by_c.rename(columns={"corruption": "row", "top1": "value"}))
    bench = _benchmark(df)
    per_sev = bench.groupby(["method", "distortion", "seed", "severity"])["top1"].mean()
    by_s = per_sev.groupby(["method", "seed", "severity"]).mean().reset_index()
    by_s["row"] = "severity " + by_s["severity"].astype(str)
    parts.append(by_s.drop(columns="severity").rename(columns={"top1": "value"}))
    mean = bench.groupby(["method", "distortion", "seed"])["top1"].mean()
    mean = mean.groupby(["method", "seed"]).mean().reset_index()
    parts.append(mean.assign(row=MEAN_ROW).rename(columns={"top1": "value"}))
    parts.append(mce_per_seed(df, baseline).assign(row=MCE_ROW).rename(columns={"mce": "value"}))
    return pd.concat(parts, ignore_index=True)[["row", "method", "seed", "value"]]


def _keys(row: str, grp: pd.DataFrame) -> list[tuple[str, ...]]:
    """The keys of one file and seed that a row's value is computed from.

    A file's ``per_seed`` summary averages all its corruptions; where it holds an extra one,
    the benchmark-only rows list the benchmark values instead (per corruption, or per result).
    """
    bench = grp[grp["corruption"].isin(BENCHMARK_CORRUPTIONS)]
    extras = len(bench) < len(grp)
    if row == MEAN_ROW and not extras:
        return [("mean",)]
    if row.startswith("severity "):
        severity = row.split()[1]
        if not extras:
            return [("per_severity", severity)]
        at = bench[bench["severity"] == int(severity)]
        return [("results", str(i), "top1") for i in at["index"]]
    if row in (MEAN_ROW, MCE_ROW):
        return [("per_corruption", c) for c in sorted(set(bench["corruption"]))]
    return [("per_corruption", row)]


def cell_entries(df: pd.DataFrame, row: str, method: str, baseline: str) -> list[dict[str, Any]]:
    """The values a cell is computed from, each with its file, sha256 and key (for the audit).

    Each value is read back from the file (the audit compares it with the file exactly); an
    mCE cell lists the per-corruption top-1 of the method and of the baseline it is normalised
    by, on the benchmark corruptions.
    """
    methods = [method, baseline] if row == MCE_ROW and method != baseline else [method]
    sel = df[df["method"].isin(methods)]
    out = []
    for (m, d, seed, path), grp in sel.groupby(["method", "distortion", "seed", "file"]):
        rec = read_json(path, "corruption evaluation")
        for key in _keys(row, grp):
            full = ("per_seed", str(seed), *key) if key[0] != "results" else key
            value: Any = rec
            for k in full:
                value = value[int(k)] if isinstance(value, list) else value[k]
            out.append(
                {
                    "seed": int(seed),
                    "method": m,
                    "distortion": d,
                    "metrics": path,
                    "sha256": sha256_file(path),
                    "metric": ".".join(full),
                    "value": float(value),
                }
            )
    return out
