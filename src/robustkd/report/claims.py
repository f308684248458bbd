"""The main paper's qualitative claims, each with a generated verdict from the paired seeds.

The paper states its findings qualitatively: ours beats the supervised baseline and
Contrastive Inversion under every distortion (Table 1), the full loss beats each ablation
(Table 3), the gap is large when labels are scarce (Fig 3), it persists beyond the training
severity (Fig 2), and the distilled students transfer better (Table 2). Each claim here is a
linear combination of per-seed metrics that the paper says is positive, e.g.
``top1(ours, d, s) - top1(supervised, d, s)``, or, for "the gap is larger at low label
fractions", ``gap(lowest fraction, s) - gap(100 %, s)``. Seed ``s`` of every run shares data
order, augmentation and distortion draws, so the combination is computed per seed and tested
like a paired difference (:func:`robustkd.report.stats.paired_test` against zero).

**Verdicts** (:mod:`robustkd.report.verdicts`; assumed, not from the paper): every claim's
difference test and equivalence test form one family, Holm-adjusted at ``claims.alpha``, so
the chance that any verdict of the table is wrong is at most alpha. A claim is *equivalent*
when its adjusted equivalence p is below alpha (no difference as large as
``claims.equivalence_margin`` points), else *supported* or *contradicted* when its adjusted
difference p is (by the sign of the mean), else *undecided*, with the minimal detectable effect
saying what the run could have seen. The same code gives the verdicts of a paper-scale run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from robustkd.atomic import atomic_write_text
from robustkd.labelfractions import fraction_used, share_text
from robustkd.layout import (
    METHOD_LABELS,
    finetune_files,
    fraction_tag,
    ladder_file,
    row_label,
    table_spec,
)
from robustkd.provenance import now_iso
from robustkd.report.claims_text import claims_markdown
from robustkd.report.pages import write_markdown
from robustkd.report.stats import format_paired, paired_test
from robustkd.report.tables import cell_record, read_value, write_table_provenance
from robustkd.report.verdicts import VERDICTS, decide

__all__ = [
    "DEFAULT_DECISION",
    "VERDICTS",
    "Claim",
    "Term",
    "build_claims_table",
    "claim_inputs",
    "paper_claims",
]

# The paper config's ``claims`` section (config/config.yaml), for callers without a config.
DEFAULT_DECISION = {"alpha": 0.05, "power": 0.8, "equivalence_margin": 2.0}


@dataclass(frozen=True)
class Term:
    """One metric of a claim's combination: ``coef * value``, one metrics file per seed.

    Attributes:
        label: What the value is (``Ours``, ``Supervised Baseline at 1 %``).
        coef: Its coefficient in the combination (+1, -1).
        files: The metrics file of each seed (same order as the claim's seeds).
        metric: The metric's key in a metrics file (``top1``); for a Fig 2 ladder file,
            ``ladder:<test distortion>``, resolved to ``results.<i>.top1`` of that seed.
    """

    label: str
    coef: float
    files: tuple[str, ...]
    metric: str = "top1"


@dataclass(frozen=True)
class Claim:
    """A qualitative claim of the paper: ``sum(coef * value)`` is positive, seed for seed.

    Attributes:
        key: Unique key (``table1/mask-0.90/ours-supervised``), the row key of its cells.
        source: Where the paper makes it (``Table 1``).
        statement: The claim in words.
        seeds: The seeds of every term's files.
        terms: The combination.
        shares: ``(placeholder, fraction asked, metrics files)``: the statement's
            ``placeholder`` becomes the share of labels those runs used (Fig 3;
            :func:`robustkd.labelfractions.share_text`), read when the table is built.
    """

    key: str
    source: str
    statement: str
    seeds: tuple[int, ...]
    terms: tuple[Term, ...]
    shares: tuple[tuple[str, float, tuple[str, ...]], ...] = ()


def _files(
    method: str, dist: str, seeds: Sequence[int], dataset: str = "imagenet100", fraction: str = "1"
) -> tuple[str, ...]:
    return tuple(finetune_files(dataset, method, dist, fraction, s)["metrics"] for s in seeds)


def _pair(key: str, source: str, statement: str, seeds: tuple[int, ...], a: Term, b: Term) -> Claim:
    return Claim(key, source, statement, seeds, (a, Term(b.label, -1.0, b.files, b.metric)))


def _baselines(experiment: Mapping[str, Any]) -> list[str]:
    """The baselines ours is compared with in a table: those it runs, as ours is."""
    return [b for b in ("supervised", "ci") if {"ours", b} <= set(experiment["methods"])]


def paper_claims(config: Mapping[str, Any]) -> list[Claim]:
    """Every claim the configured experiments can test (absent methods: no claim).

    Args:
        config: The merged workflow config (``experiments``, ``seeds``, ``distortions``).

    Returns:
        The claims in the paper's order: Table 1, Table 3, Fig 3, Fig 2, Table 2; only those
        of ``claims.sources`` where the config names them (the experiments of the family).
    """
    seeds = tuple(int(s) for s in config["seeds"])
    exp = config["experiments"]
    label = METHOD_LABELS
    claims: list[Claim] = []

    t1 = exp["table1"]
    rows = dict(table_spec(config, "table1").rows)
    for base in _baselines(t1):
        for d in t1["distortions"]:
            claims.append(
                _pair(
                    f"table1/{d}/ours-{base}",
                    "Table 1",
                    f"Ours beats {label[base]} under {rows[d]}",
                    seeds,
                    Term(label["ours"], 1.0, _files("ours", d, seeds)),
                    Term(label[base], 1.0, _files(base, d, seeds)),
                )
            )

    t3 = exp["table3"]
    cols = dict(table_spec(config, "table3").columns)
    if "ours" in t3["methods"]:
        for d in t3["distortions"]:
            for m in t3["methods"]:
                if m == "ours":
                    continue
                claims.append(
                    _pair(
                        f"table3/{d}/ours-{m}",
                        "Table 3",
                        f"The full loss beats the {label[m]} ablation under {cols[d]}",
                        seeds,
                        Term("Gl. Local Attention", 1.0, _files("ours", d, seeds)),
                        Term(label[m], 1.0, _files(m, d, seeds)),
                    )
                )

    f3 = exp["fig3"]
    if {"ours", "supervised"} <= set(f3["methods"]) and f3["fractions"]:
        fr = sorted(float(f) for f in f3["fractions"])
        low, high = fraction_tag(fr[0]), fraction_tag(fr[-1])
        for d in f3["distortions"]:
            name = rows.get(d, d)
            o_low = Term(f"Ours at {low}", 1.0, _files("ours", d, seeds, fraction=low))
            s_low = Term(f"Supervised at {low}", 1.0, _files("supervised", d, seeds, fraction=low))
            shares = (("{low}", fr[0], o_low.files + s_low.files),)
            claims.append(
                replace(
                    _pair(
                        f"fig3/{d}/frac{low}/ours-supervised",
                        "Fig 3",
                        "Ours beats the supervised baseline with {low} of the labels, under "
                        + name,
                        seeds,
                        o_low,
                        s_low,
                    ),
                    shares=shares,
                )
            )
            if high != low:
                o_hi = _files("ours", d, seeds, fraction=high)
                s_hi = _files("supervised", d, seeds, fraction=high)
                claims.append(
                    Claim(
                        f"fig3/{d}/gap{low}-gap{high}",
                        "Fig 3",
                        "The gap (ours minus supervised) is larger with {low} of the labels than "
                        f"with {{high}}, under {name}",
                        seeds,
                        (
                            o_low,
                            Term(s_low.label, -1.0, s_low.files),
                            Term(f"Ours at {high}", -1.0, o_hi),
                            Term(f"Supervised at {high}", 1.0, s_hi),
                        ),
                        (*shares, ("{high}", fr[-1], o_hi + s_hi)),
                    )
                )

    f2 = exp["fig2"]
    if {"ours", "supervised"} <= set(f2["methods"]):
        for lad in f2["ladders"]:
            for test in lad["test"]:
                claims.append(
                    _pair(
                        f"fig2/{lad['train']}/{test}/ours-supervised",
                        "Fig 2",
                        f"Trained at {rows.get(lad['train'], lad['train'])}, ours beats the "
                        f"supervised baseline tested at the stronger {row_label(config, test)}",
                        seeds,
                        Term(
                            label["ours"],
                            1.0,
                            (ladder_file("ours", lad["train"]),) * len(seeds),
                            f"ladder:{test}",
                        ),
                        Term(
                            label["supervised"],
                            1.0,
                            (ladder_file("supervised", lad["train"]),) * len(seeds),
                            f"ladder:{test}",
                        ),
                    )
                )

    t2 = exp["table2"]
    t2_rows = dict(table_spec(config, "table2").rows)
    for base in _baselines(t2):
        for d in t2["distortions"]:
            family = t2_rows[f"ours/{d}"].removeprefix("Ours ")
            for ds in t2["datasets"]:
                claims.append(
                    _pair(
                        f"table2/{d}/{ds}/ours-{base}",
                        "Table 2",
                        f"Ours transfers better than {label[base]} to {ds} {family}",
                        seeds,
                        Term(label["ours"], 1.0, _files("ours", d, seeds, dataset=ds)),
                        Term(label[base], 1.0, _files(base, d, seeds, dataset=ds)),
                    )
                )
    sources = config.get("claims", {}).get("sources")
    return claims if not sources else [c for c in claims if c.key.split("/")[0] in sources]


def claim_inputs(claims: Sequence[Claim]) -> list[str]:
    """Every metrics file the claims read (the claims job's inputs), sorted."""
    return sorted({f for c in claims for t in c.terms for f in t.files})


def _read(path: str, cache: dict[str, Any]) -> Any:
    if path not in cache:
        try:
            cache[path] = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: metrics file not found") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: malformed metrics file ({exc})") from None
    return cache[path]


def _statement(claim: Claim, cache: dict[str, Any]) -> str:
    """The claim's statement with each share placeholder replaced by the share runs used."""
    text = claim.statement
    for placeholder, asked, files in claim.shares:
        used = {fraction_used(_read(f, cache), f, asked) for f in files}
        if len(used) > 1:
            raise ValueError(
                f"{', '.join(files)}: runs of label fraction {asked:g} used different shares of "
                f"the labels ({sorted(used)}); rerun them on the same prepared data"
            )
        text = text.replace(placeholder, share_text(used.pop(), asked))
    return text


def _value(path: str, metric: str, seed: int, cache: dict[str, Any]) -> tuple[str, float]:
    """The metric of one seed and the key that reads it from the file (for the audit)."""
    return read_value(path, _read(path, cache), metric, seed)


def build_claims_table(
    claims: Sequence[Claim],
    out_prefix: str | os.PathLike[str],
    *,
    decision: Mapping[str, float] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Write ``<out_prefix>.{csv,md,html}`` (one row per claim), then its ``.provenance.json``.

    Args:
        claims: From :func:`paper_claims`.
        out_prefix: Path without extension (``results/tables/claims``).
        decision: The config's ``claims`` section: ``alpha``, ``power``,
            ``equivalence_margin`` (default :data:`DEFAULT_DECISION`).
        provenance: Fields of the record (``rule``, ``config``, ``wildcards``).

    Returns:
        One dict per claim: key, source, statement, n, mean, std, ci_low, ci_high, p, p_adj,
        p_equiv, p_equiv_adj, mde (points), verdict (:data:`VERDICTS`), text, values.

    Raises:
        FileNotFoundError: A metrics file is missing. KeyError: a metric is absent from it.
        ValueError: A metrics file is not JSON.
    """
    import pandas as pd

    rule = {**DEFAULT_DECISION, **(decision or {})}
    started, cache = now_iso(), {}
    rows, cells, tested = [], [], []
    for c in claims:
        c = replace(c, statement=_statement(c, cache), shares=())
        per_seed = [0.0] * len(c.seeds)
        for t in c.terms:
            keys, values = [], []
            for k, (s, f) in enumerate(zip(c.seeds, t.files, strict=True)):
                key, v = _value(f, t.metric, s, cache)
                keys.append(key)
                values.append(v)
                per_seed[k] += t.coef * v
            cell = cell_record(
                c.key,
                t.label,
                "top1",
                t.files,
                values,
                c.seeds,
                row_label=c.statement,
                column_label=f"{t.coef:+g} x {t.label}",
            )
            for seed_rec, key in zip(cell["seeds"], keys, strict=True):
                seed_rec["metric"] = key
            cells.append(cell)
        res = paired_test(per_seed, [0.0] * len(per_seed), seeds=c.seeds)
        tested.append(per_seed)
        rows.append(
            {
                "claim": c.key,
                "source": c.source,
                "statement": c.statement,
                "n": res.n,
                "mean": res.mean_diff,
                "std": res.std_diff,
                "ci_low": res.ci_low,
                "ci_high": res.ci_high,
                "p": res.p,
                "text": format_paired(res),
                "values": json.dumps(per_seed),
            }
        )
    decisions = decide(
        tested,
        [r["p"] for r in rows],
        margin=float(rule["equivalence_margin"]),
        alpha=float(rule["alpha"]),
        power=float(rule["power"]),
    )
    for r, d in zip(rows, decisions, strict=True):
        r.update(p_adj=d.p_adj, p_equiv=d.p_equiv, p_equiv_adj=d.p_equiv_adj, mde=d.mde)
        r["verdict"] = d.verdict
    columns = ["claim", "source", "statement", "n", "mean", "std", "ci_low", "ci_high", "p"]
    columns += ["p_adj", "p_equiv", "p_equiv_adj", "mde", "verdict", "text", "values"]
    df = pd.DataFrame(rows, columns=columns)
    outputs = [f"{out_prefix}.{ext}" for ext in ("csv", "md", "html")]
    atomic_write_text(outputs[0], df.drop(columns=["text"]).to_csv(index=False))
    write_markdown(outputs[1], claims_markdown(rows, rule), page=outputs[2])
    write_table_provenance(
        out_prefix,
        name="claims",
        title="The main paper's claims: paired differences over seeds and verdicts",
        metric="top1",
        cells=cells,
        outputs=outputs,
        comparisons=[{k: v for k, v in r.items() if k != "values"} for r in rows],
        provenance=provenance or {"rule": "claims"},
        started=started,
    )
    return rows
