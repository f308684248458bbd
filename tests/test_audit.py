"""`robustkd audit`: walk a table cell back to the raw data, re-hash, name the first break.

Unit tests build a small chain of provenance records by hand (raw -> prepared -> teacher ->
students -> fine-tuned models -> table); the end-to-end test audits the tables of the real DAG
on the tiny overlay (the shared `tiny_run`), then flips one byte of a checkpoint, of a prepared
image and of a packed array.
"""

import csv
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from robustkd.audit import AuditError, audit, find_table_provenance
from robustkd.audit.printer import machine
from robustkd.cli import main
from robustkd.provenance import sha256_file, write_provenance
from robustkd.report.tables import Cell, TableSpec, build_table, with_reference_comparisons
from tests import bounded

SEEDS = (0, 1, 2)


@contextmanager
def flipped(path: Path, offset: int = 64):
    """Flip one byte of a file (through links); restore its bytes and times afterwards.

    The times matter: the tiny run is shared, and a newer mtime would make Snakemake rerun.
    """
    original, st = path.read_bytes(), path.stat()
    data = bytearray(original)
    data[min(offset, len(data) - 1)] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        yield path
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def build_chain(root: Path) -> None:
    """A miniature of the pipeline's records, paths relative to ``root`` (the cwd)."""
    raw = Path("results/raw_demo/toy")
    images = [_write(raw / f"train/img{i}.png", bytes([i]) * 200) for i in range(3)]
    write_provenance(
        raw / "provenance.json", rule="demo_raw", outputs=[raw], config={"demo_raw.seed": 0}
    )

    data = Path("results/data/toy")
    rows = []
    for i, img in enumerate(images):
        link = data / f"images/train/img{i}.png"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((root / img).resolve())
        rows.append(["train", i % 2, f"images/train/img{i}.png", -1, sha256_file(img)])
    arrays = _write(data / "arrays/test.npy", b"\x93NUMPY" + bytes(range(200)))
    rows += [["test", 0, "arrays/test.npy", 0, ""], ["test", 1, "arrays/test.npy", 1, ""]]
    with open(data / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["split", "label", "path", "index", "sha256"], *rows])
    _write(data / "classes.txt", b"a\nb\n")
    _write(Path("config/classes.txt"), b"a\nb\n")  # a source: only its consumer hashes it
    write_provenance(
        data / "provenance.json",
        rule="prepare_toy",
        inputs=["config/classes.txt"],
        outputs=[data / "manifest.csv", data / "classes.txt", arrays],
        config={"data.datasets.toy": {"root": str(raw)}},
        extra={"source": str(raw)},
    )
    manifest = str(data / "manifest.csv")

    teacher = _write(Path("results/teachers/vit/seed0/model.pth"), b"teacher" * 50)
    write_provenance(
        "results/teachers/vit/seed0/provenance.json",
        rule="pretrain_backbone",
        inputs=[manifest],
        outputs=[teacher],
        config={"pretrain": {"epochs": 2}},
        seed=0,
        wildcards={"backbone": "vit"},
    )
    for s in SEEDS:
        student = _write(Path(f"results/distill/ours/mask/seed{s}/student.pth"), b"s%d" % s * 80)
        write_provenance(
            Path(student).parent / "provenance.json",
            rule="distill",
            inputs=[teacher, manifest],
            outputs=[student],
            config={"loss": {"lambda_a": 10.0}, "backbone": {"weights": teacher}},
            seed=s,
            wildcards={"distill_method": "ours", "distortion": "mask"},
        )
        for method, init, top1 in (("ours", student, 60.0 + s), ("supervised", None, 50.0 + s)):
            run = Path(f"results/finetune/toy/{method}/mask/frac1/seed{s}")
            model = _write(run / "model.pth", f"{method}{s}".encode() * 40)
            metrics = _write(run / "metrics.json", json.dumps({"top1": top1, "seed": s}).encode())
            write_provenance(
                run / "provenance.json",
                rule="finetune",
                inputs=[manifest, *([init] if init else [])],
                outputs=[model, metrics],
                config={"backbone": {"weights": init or teacher}, "dataset": str(data)},
                seed=s,
                wildcards={"method": method, "distortion": "mask"},
            )
    spec = TableSpec(
        "toytable",
        "Toy table",
        rows=[("mask", "Random Mask")],
        columns=[("supervised", "Supervised"), ("ours", "Ours")],
        row_header="Distortion",
    )
    cells = [
        Cell(
            "mask",
            m,
            tuple(f"results/finetune/toy/{m}/mask/frac1/seed{s}/metrics.json" for s in SEEDS),
        )
        for m in ("supervised", "ours")
    ]
    build_table(
        with_reference_comparisons(spec, "ours"),
        cells,
        "results/tables/toytable",
        provenance={"rule": "make_table", "wildcards": {"table": "toytable"}},
    )


@pytest.fixture
def chain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build_chain(tmp_path)
    return tmp_path


def _audit(target, **kw):
    lines = []
    result = audit(target, echo=lines.append, **kw)
    return result, "\n".join(lines + result.summary)


def test_intact_chain_passes_and_prints_every_link(chain):
    result, out = _audit("results/tables/toytable.csv")
    assert result.ok, out
    assert result.cells == 2 and "AUDIT PASSED: 2 cells" in out
    # Every link: rule, seed, commit, config values; down to the raw data and the sources.
    for text in (
        "<- finetune  results/finetune/toy/ours/mask/frac1/seed2/provenance.json",
        "<- distill  results/distill/ours/mask/seed0/provenance.json",
        "<- pretrain_backbone  results/teachers/vit/seed0/provenance.json",
        "<- prepare_toy  results/data/toy/provenance.json",
        "<- demo_raw  results/raw_demo/toy/provenance.json",
        "<- source  config/classes.txt",
        "seed 1 | commit",
        f"| cpu ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread",
        "loss.lambda_a=10.0",
        "3 manifest images",
    ):
        assert text in out, text
    # The supervised runs name the teacher in their config without hashing it: a warning.
    assert any("results/teachers/vit/seed0/model.pth" in w for w in result.warnings)


def test_table_provenance_maps_cells_to_metrics(chain):
    prov = json.loads(Path("results/tables/toytable.provenance.json").read_text())
    cell = next(c for c in prov["table"]["cells"] if c["column"] == "ours")
    assert [s["seed"] for s in cell["seeds"]] == list(SEEDS)
    for s in cell["seeds"]:
        assert s["sha256"] == sha256_file(s["metrics"])
        assert s["value"] == json.loads(Path(s["metrics"]).read_text())["top1"]
    assert set(prov["outputs"]) == {
        f"results/tables/toytable.{e}" for e in ("csv", "md", "tex", "html")
    }
    assert len(prov["inputs"]) == 6 and prov["rule"] == "make_table"


@pytest.mark.parametrize(
    "victim",
    [
        "results/distill/ours/mask/seed1/student.pth",  # a checkpoint
        "results/finetune/toy/ours/mask/frac1/seed0/model.pth",
        "results/data/toy/images/train/img2.png",  # a prepared image (a link to the raw one)
        "results/data/toy/arrays/test.npy",  # a packed array
        "results/teachers/vit/seed0/model.pth",
        "config/classes.txt",  # a source outside results/
    ],
)
def test_one_flipped_byte_fails_naming_the_file(chain, victim, capsys):
    with flipped(Path(victim)):
        code = main(["audit", "results/tables/toytable.csv"])
        out = capsys.readouterr().out
        assert code == 1
        assert out.rstrip().splitlines()[-1] == f"first failing file: {victim} (changed)"
    assert main(["audit", "toytable", "-q"]) == 0


def test_missing_file_and_broken_records(chain):
    model = Path("results/finetune/toy/ours/mask/frac1/seed2/model.pth")
    model.unlink()
    result, out = _audit("toytable")
    assert not result.ok and result.problems[0].kind == "missing"
    assert result.problems[0].path == str(model)

    prov = Path("results/distill/ours/mask/seed0/provenance.json")
    prov.write_text("{not json")
    result, _ = _audit("toytable", cell=("mask", "Ours"))
    kinds = {p.path: p.kind for p in result.problems}
    assert kinds[str(prov)] == "malformed"

    prov.unlink()
    result, _ = _audit("toytable", cell=("mask", "ours"))
    student = "results/distill/ours/mask/seed0/student.pth"
    assert any(p.path == student and p.kind == "no-provenance" for p in result.problems)
    assert str(prov) in next(p.detail for p in result.problems if p.path == student)


def test_one_cell_by_key_or_label(chain):
    by_key, _ = _audit("toytable", cell=("mask", "ours"))
    by_label, out = _audit("results/tables/toytable.md", cell=("random mask", "OURS"))
    assert by_key.ok and by_label.ok and by_key.cells == by_label.cells == 1
    assert "Cell [Random Mask | Ours]" in out and "supervised/mask" not in out
    # Flipping a file of the other column does not break this cell's chain.
    with flipped(Path("results/finetune/toy/supervised/mask/frac1/seed0/model.pth")):
        assert _audit("toytable", cell=("mask", "ours"))[0].ok
        assert not _audit("toytable", cell=("mask", "supervised"))[0].ok


def test_any_output_file_can_be_audited(chain):
    result, out = _audit("results/distill/ours/mask/seed2/student.pth")
    assert result.ok and "<- pretrain_backbone" in out
    with flipped(Path("results/data/toy/images/train/img0.png")):
        result, _ = _audit("results/distill/ours/mask/seed2/student.pth")
        assert result.problems[0].path == "results/data/toy/images/train/img0.png"


def test_a_figure_is_walked_through_the_job_that_made_its_data(chain, capsys):
    """Fig 4: the figure's record -> the attention maps job's file -> the models and data."""
    npz = _write(Path("results/eval/fig4/attention.npz"), b"maps" * 50)
    models = [
        "results/teachers/vit/seed0/model.pth",
        "results/distill/ours/mask/seed0/student.pth",
        "results/finetune/toy/supervised/mask/frac1/seed0/model.pth",
    ]
    write_provenance(
        "results/eval/fig4/provenance.json",
        rule="attention_maps",
        inputs=[*models, "results/data/toy/manifest.csv"],
        outputs=[npz],
        seed=0,
    )
    figure = [_write(Path(f"results/figures/fig4.{e}"), e.encode() * 30) for e in ("png", "csv")]
    write_provenance(
        "results/figures/fig4.provenance.json", rule="make_fig4", inputs=[npz], outputs=figure
    )
    for target in ("results/figures/fig4.csv", "results/figures/fig4.provenance.json"):
        result, out = _audit(target)
        assert result.ok, (target, result.problems)
        for text in (
            "<- make_fig4  results/figures/fig4.provenance.json",
            "<- attention_maps  results/eval/fig4/provenance.json",
            "<- distill  results/distill/ours/mask/seed0/provenance.json",
            "<- finetune  results/finetune/toy/supervised/mask/frac1/seed0/provenance.json",
            "<- prepare_toy  results/data/toy/provenance.json",
        ):
            assert text in out, (target, text)
    with flipped(Path(models[1])):
        result, _ = _audit("results/figures/fig4.png")
        assert result.problems[0].path == models[1]
    assert main(["audit", "results/figures/fig4.csv", "--cell", "a", "b"]) == 2
    assert "--cell applies to tables only" in capsys.readouterr().err


def test_any_output_folder_can_be_audited(chain, capsys):
    """A prepared dataset, a run folder, a folder above several runs, a tables folder."""
    for target in ("results/data/toy", "results/data/toy/", "./results/data/toy"):
        result, out = _audit(target)
        assert result.ok, (target, result.problems)
        assert "prepare_toy" in out and "3 manifest images re-hashed" in out
        assert result.links == 2  # the preparation and the raw data it came from
    result, out = _audit("results/distill/ours/mask")
    assert result.ok
    for seed in (0, 1, 2):
        assert f"<- distill  results/distill/ours/mask/seed{seed}/provenance.json" in out
    assert result.links == 3 + 3  # three students, the teacher, the prepared data, the raw data
    result, _ = _audit("results/tables")
    assert result.ok and result.cells == 2
    with flipped(Path("results/data/toy/images/train/img0.png")):
        result, _ = _audit("results/data/toy")
        assert result.problems[0].path == "results/data/toy/images/train/img0.png"
        assert main(["audit", "-q", "results/data/toy"]) == 1
    assert main(["audit", "-q", "results/data/toy"]) == 0
    Path("results/scratch").mkdir()
    assert main(["audit", "results/scratch"]) == 2
    err = capsys.readouterr().err
    assert "results/scratch: no provenance.json in this folder or below it" in err


def test_an_edited_table_fails(chain):
    with flipped(Path("results/tables/toytable.md"), offset=3):
        result, _ = _audit("toytable")
        assert result.problems[0].path == "results/tables/toytable.md"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "table9"], "unknown table 'table9'"),
        (["audit", "results/tables/table9.csv"], "results/tables/table9.provenance.json"),
        (["audit", "results/nothing/here.pth"], "results/nothing/here.pth: no such file"),
        (
            ["audit", "toytable", "--cell", "mask", "ci"],
            "no cell with data at row 'mask', column 'ci'",
        ),
    ],
)
def test_bad_input_is_a_clear_error(chain, capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("robustkd audit: error:")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{broken", "malformed table provenance"),
        ('{"rule": "make_table", "inputs": {}, "outputs": {}}', "no 'table.cells'"),
        ('{"rule": "x", "inputs": [], "outputs": {}}', "'inputs' is not path -> sha256"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_malformed_table_provenance_names_the_file(chain, capsys, content, message):
    Path("results/tables/toytable.provenance.json").write_text(content)
    assert main(["audit", "results/tables/toytable.csv"]) == 2
    err = capsys.readouterr().err
    assert "results/tables/toytable.provenance.json" in err and message in err


def test_missing_table_provenance(chain):
    Path("results/tables/toytable.provenance.json").unlink()
    with pytest.raises(AuditError, match="no table provenance for table file"):
        find_table_provenance("results/tables/toytable.csv", ".")


# ----------------------------------------------------------------------------------------------
# End to end: the tables of the real DAG on the tiny overlay
# ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_audit_of_the_real_dag(tiny_run, capsys):
    """Every cell of every table passes; a flipped checkpoint, image or array fails, named."""
    root = ["--root", str(tiny_run)]
    for table, rule in (("table1", "finetune"), ("table2", "transfer"), ("table3", "finetune")):
        assert main(["audit", f"results/tables/{table}.csv", *root]) == 0, table
        captured = capsys.readouterr()
        out = captured.out
        # The prepare jobs hash the checksum files they trust (MD5SUMS): no weak link there.
        assert "MD5SUMS" not in captured.err, captured.err
        for text in (
            f"<- {rule}  ",
            "<- distill",
            "<- pretrain_backbone",
            "<- prepare_",
            "<- demo_raw",
        ):
            assert text in out, (table, text)
        assert "AUDIT PASSED" in out

    manifest = tiny_run / "results/data/imagenet100/manifest.csv"
    first_image = next(r["path"] for r in csv.DictReader(manifest.open()) if r["sha256"])
    victims = [
        ("table1", "results/distill/ours/mask-0.90/seed1/student.pth"),
        ("table3", "results/finetune/imagenet100/global/noise-0.5/frac1/seed0/model.pth"),
        ("table3", "results/teachers/vit/seed0/model.pth"),
        ("table1", f"results/data/imagenet100/{first_image}"),
        ("table2", "results/data/cifar10/arrays/train.npy"),
    ]
    for table, victim in victims:
        with flipped(tiny_run / victim, offset=200):
            assert main(["audit", table, "-q", *root]) == 1, victim
            last = capsys.readouterr().out.rstrip().splitlines()[-1]
            # A prepared image links to its raw file (demo_raw's output): the walk may reach
            # the raw tree first (through the teachers' pretraining corpus, written into the
            # same miniature ILSVRC tree) and name the file the flip changed under that name.
            names = {victim, os.path.relpath((tiny_run / victim).resolve(), tiny_run.resolve())}
            assert last in {f"first failing file: {n} (changed)" for n in names}, last

    # Deleted, then restored: missing is named too; the chain passes again after.
    model = tiny_run / "results/finetune/imagenet100/ours/blur-9-1.3/frac1/seed0/model.pth"
    backup = model.with_suffix(".bak")
    shutil.move(model, backup)
    try:
        assert main(["audit", "table1", "--cell", "blur-9-1.3", "ours", "-q", *root]) == 1
        last = capsys.readouterr().out.rstrip().splitlines()[-1]
        assert last == f"first failing file: {model.relative_to(tiny_run)} (missing)"
    finally:
        shutil.move(backup, model)
    assert main(["audit", "table1", "-q", *root]) == 0
    # Bytes and times restored: the shared run is still complete for Snakemake.
    cmd = [sys.executable, "-m", "snakemake", "all", "--dry-run", "--cores", "1"]
    cmd += ["--configfile", "config/demo.yaml", "config/tiny.yaml"]
    proc = bounded.run(cmd, what="Snakemake dry run", timeout=bounded.QUICK, cwd=tiny_run)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_hand_written_table_with_nested_metrics(chain):
    """A table not built by build_table (e.g. the CRAFT table) uses write_table_provenance."""
    from robustkd.report.tables import cell_record, write_table_provenance

    files = []
    for s in SEEDS:
        run = Path(f"results/finetune/toy/ours/mask/frac1/seed{s}")
        files.append(str(run / "metrics.json"))
    metrics = [json.loads(Path(f).read_text()) for f in files]
    Path("results/tables/custom.md").write_text("| a |\n")
    good = cell_record("ours", "top1", "top1", files, [m["top1"] for m in metrics], SEEDS)
    # A dotted metric reads a nested value; a wrong recorded value is a problem.
    nested = cell_record("ours", "seed", "seed", files, [0, 1, 5], SEEDS)
    write_table_provenance(
        "results/tables/custom",
        name="custom",
        title="Custom",
        metric="top1",
        cells=[good, nested],
        outputs=["results/tables/custom.md"],
    )
    result, _ = _audit("custom", cell=("ours", "top1"))
    assert result.ok
    result, _ = _audit("custom", cell=("ours", "seed"))
    assert [(p.kind, p.path) for p in result.problems] == [("value", files[2])]


def test_metric_values_top_level_or_nested(tmp_path):
    from robustkd.audit.records import metric_value

    p = tmp_path / "m.json"
    p.write_text(json.dumps({"top1": 5, "cost": {"train_seconds": 2.5}, "a.b": 1}))
    assert metric_value(p, "top1") == 5.0
    assert metric_value(p, "cost.train_seconds") == 2.5
    assert metric_value(p, "a.b") == 1.0  # a top-level key with a dot wins
    assert metric_value(p, "cost.nope") is None and metric_value(tmp_path / "x", "top1") is None


def test_link_names_the_machine_and_older_records_just_the_device():
    hw = {"cpu": "AMD EPYC", "torch_cpu_capability": "AVX512", "torch_threads": 2}
    assert machine({"device": "cpu", "hardware": hw}) == "cpu (AVX512, 2 threads)"
    one = {**hw, "torch_threads": 1}
    assert machine({"device": "cpu", "hardware": one}) == "cpu (AVX512, 1 thread)"
    assert machine({"device": "cuda:0"}) == "cuda:0"  # written before records named hardware
    assert machine({"device": "cpu", "hardware": {**hw, "torch_cpu_capability": None}}) == "cpu"
