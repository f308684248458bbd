"""Fig 2's severity ladder and Table 4's clean row: classifiers at several test distortions.

:func:`ladder_job` (rule ``evaluate_ladder``) scores the fine-tuned classifiers of one method,
one per seed, on the evaluation split under each test distortion of the ladder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robustkd.atomic import write_json_atomic
from robustkd.engine.data import load_image_set
from robustkd.engine.evaluate import EvalLoader, evaluate_classifier
from robustkd.engine.inputs import eval_setup, eval_split, resolve_distortion
from robustkd.engine.jobsetup import write_run_provenance
from robustkd.provenance import now_iso, record_beside

__all__ = ["ladder_job"]

log = logging.getLogger(__name__)


def ladder_job(
    *,
    backbone: Mapping[str, Any],
    models: Sequence[str | os.PathLike[str]],
    seeds: Sequence[int],
    data_dir: str | os.PathLike[str],
    tests: Mapping[str, Mapping[str, Any] | None],
    evaluation: Mapping[str, Any],
    views: Mapping[str, Any],
    out: str | os.PathLike[str],
    threads: int = 1,
    device: str = "auto",
    rule: str = "evaluate_ladder",
    wildcards: Mapping[str, Any] | None = None,
    record_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Evaluate fine-tuned classifiers (one per seed) at several test distortions (Fig 2, Table 4).

    Args:
        backbone: The classifiers' backbone spec.
        models: ``model.pth`` of each seed.
        seeds: The seeds, in the order of ``models``.
        data_dir: Prepared ImageNet-100.
        tests: Test distortion name -> config entry (the training one first); None tests
            clean images (Table 4's clean row).
        evaluation: ``repeats``, ``batch_size``, ``amp``.
        views: ``preload_size``.
        out: The ``ladder.json`` to write.
        threads: CPU threads.
        device: Device name or ``auto``.
        rule: Rule name for the provenance.
        wildcards: Wildcards for the provenance.
        record_file: The job's provenance record (the rule's declared output); default
            ``ladder.provenance.json`` beside ``out``
            (:func:`robustkd.provenance.record_beside`), never the folder's ``provenance.json``,
            which the other evaluation job of the same (method, distortion) would overwrite.

    Returns:
        The record written: one result per (seed, test distortion).
    """
    started = now_iso()
    env = eval_setup(
        backbone=backbone, views=views, data_dir=data_dir, threads=threads, device=device
    )
    split = eval_split(env.prepared)
    test_set = load_image_set(
        env.prepared, split, env.view, train=False, preload_size=views.get("preload_size")
    )
    loader = EvalLoader(test_set, env.workers)  # its workers serve every seed and test
    results = []
    for seed, path in zip(seeds, models, strict=True):
        clf = env.classifier(backbone, path)
        for name, spec in tests.items():
            m = evaluate_classifier(
                clf,
                test_set,
                resolve_distortion(spec),
                env.normalize,
                repeats=int(evaluation["repeats"]),
                seed=seed,
                batch_size=int(evaluation["batch_size"]),
                device=env.device,
                amp=bool(evaluation.get("amp", False)),
                loader=loader,
            )
            results.append({"seed": seed, "distortion": name, "spec": dict(spec or {}), **m})
            log.info("seed %d, test %s: top-1 %.2f%%", seed, name, m["top1"])
    record = {"split": split, "tests": list(tests), "results": results}
    out = Path(out)
    write_json_atomic(out, record)
    write_run_provenance(
        out.parent,
        record=record_file if record_file is not None else record_beside(out),
        rule=rule,
        inputs=[*models, Path(data_dir) / "manifest.csv"],
        outputs=[out],
        wildcards=wildcards or {},
        config={"tests": dict(tests), "evaluation": dict(evaluation)},
        seed=None,
        started=started,
        device=env.device,
        extra={},
    )
    return record
