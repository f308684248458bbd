"""The conda environments the rules name exist, and the table jobs run in the light one."""

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import yaml

from tests import bounded

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "workflow" / "rules"
CONDA = re.compile(r'conda:\s*\n\s*"([^"]+)"')


def _rule_block(name: str) -> str:
    text = (RULES / "report.smk").read_text()
    start = text.index(f"rule {name}:")
    end = text.find("\nrule ", start + 1)
    return text[start : end if end != -1 else None]


def _pins(env: Path) -> set[str]:
    deps = yaml.safe_load(env.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    return {_norm(re.split(r"[=<>]", p)[0]) for p in pip}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _with_requirements(dists: set[str]) -> set[str]:
    """The distributions and everything they require (unconditionally), transitively."""
    todo, seen = list(dists), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            todo.append(_norm(re.split(r"[\s;=<>!~\[(]", req, maxsplit=1)[0]))
    return seen


def test_every_env_a_rule_names_exists():
    named = [m for smk in RULES.glob("*.smk") for m in CONDA.findall(smk.read_text())]
    assert len(named) >= 10 and "../../envs/report.yaml" in named
    for env in named:
        assert (RULES / env).resolve().is_file(), env


def test_table_jobs_use_the_report_env_and_need_nothing_outside_it():
    assert CONDA.findall(_rule_block("make_table")) == ["../../envs/report.yaml"]
    # Build a table as workflow/scripts/make_table.py does (lazy imports too: the paired
    # t-tests load scipy), with torch, torchvision, timm and Pillow absent as in the report env,
    # and list the distributions the imported modules came from.
    code = (
        "import json, sys, tempfile\n"
        "from importlib import metadata\n"
        "from pathlib import Path\n"
        "class Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'torchvision', 'timm', 'PIL'}:\n"
        "            raise ImportError(f'{name} is not in the report env')\n"
        "sys.meta_path.insert(0, Absent())\n"
        "import robustkd.joblog, robustkd.layout\n"
        "from robustkd.report.tables import Cell, TableSpec, build_table\n"
        "from robustkd.report.tables import with_reference_comparisons\n"
        "tmp = Path(tempfile.mkdtemp())\n"
        "def metrics(name, values):\n"
        "    out = []\n"
        "    for s, v in enumerate(values):\n"
        "        p = tmp / name / f'seed{s}' / 'metrics.json'\n"
        "        p.parent.mkdir(parents=True)\n"
        "        p.write_text(json.dumps({'top1': v}))\n"
        "        out.append(str(p))\n"
        "    return tuple(out)\n"
        "spec = TableSpec('t', 'T', rows=[('a', 'A')], columns=[('b', 'B'), ('ours', 'Ours')],"
        " row_header='R')\n"
        "cells = [Cell('a', 'b', metrics('b', [1.0, 2.0, 4.0])),"
        " Cell('a', 'ours', metrics('o', [2.0, 2.5, 5.0]))]\n"
        "build_table(with_reference_comparisons(spec, 'ours'), cells, tmp / 't')\n"
        "assert 'p = ' in (tmp / 't.md').read_text()\n"
        "owners = metadata.packages_distributions()\n"
        "top = {n.split('.')[0] for n, m in list(sys.modules.items()) if m is not None}\n"
        "print(sorted({d for n in top for d in owners.get(n, [])}))\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src")}
    what = "the table job's imports"
    proc = bounded.run([sys.executable, "-c", code], what=what, timeout=bounded.QUICK, env=env)
    assert proc.returncode == 0, proc.stderr
    # robustkd comes from src/; setuptools' import hook from any Python with pip (conda's too);
    # numpy.f2py (loaded by scipy) imports charset_normalizer only if it is there.
    optional = {"robustkd", "setuptools", "charset-normalizer"}
    used = {_norm(d) for d in ast.literal_eval(proc.stdout.strip())} - optional
    assert {"pandas", "numpy", "scipy"} <= used  # the check sees the table job's real imports
    allowed = _with_requirements(_pins(ROOT / "envs" / "report.yaml"))
    assert used <= allowed, (
        f"imported by the table job but not in envs/report.yaml: {used - allowed}"
    )
