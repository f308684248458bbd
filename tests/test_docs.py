"""The docs cannot rot silently: links, repository paths, hashes, issue numbers, captions, length.

The pages checked are README.md, CHANGELOG.md and docs/*.md. The rules:

1. **Links.** Every Markdown link or image ``[text](target)`` whose target is not a URL
   (``scheme://...``, ``mailto:``) resolves: the file, relative to the page, exists, and a
   ``#anchor`` names a heading of the target page (GitHub's anchors: lower case, punctuation
   other than ``-`` and ``_`` dropped, spaces to hyphens; headings inside fenced code ignored).
2. **Backticked repository paths.** An inline code span outside fenced code blocks is taken for
   a repository path when it is one token and

   - its first path component is a top-level entry of the repository (``src/...``,
     ``config/...``, ``Snakefile``, ``.ci/run``), or
   - it ends with a source extension (``.py``, ``.smk``, ``.rst``, ``.yaml``, ``.yml``,
     ``.toml``, ``.cff``, ``.md``, ``.sh``),

   and it is none of these, which are not claims about the repository's files: an output or
   run path (first component ``results``, ``logs``, ``.snakemake``, ``.venv``), a glob or a
   placeholder (``*``, ``?``, ``[``, ``<...>``, ``{...}``, ``$``, ``~``, ``...``), a URL, an
   absolute path (a user's ``/data/...``), an option (``--x``), an assignment (``a=b``), a
   ``module:function`` reference, or a file of other projects named in :data:`EXTERNAL`. A path
   with a ``/`` must exist relative to the repository root (with a trailing ``/``, as a folder);
   a bare file name must be the name of some file of the repository. Data file names
   (``provenance.json``, ``classes.txt``, ``metadata.csv``) are not source files and are not
   checked unless they are written as a path from a top-level entry.
3. **No commit hashes in README.md**: no word of 7 to 40 lower-case hex digits holding at least
   one digit and one letter, unless it is clearly part of a checksum (``sha256`` or ``md5``
   within the 24 characters before it, or an abbreviation such as ``79f3f155...1397``).
4. **No issue numbers in README.md**: nothing like ``issue 12``, ``issues 12`` or ``issue #12``
   (readers cannot reach the tracker).
5. **Every report caption is used**: the file name of each ``workflow/report/*.rst`` appears in
   the Snakefile or a ``workflow/rules/*.smk`` file.
6. **README.md stays short**: at most :data:`MAX_README_LINES` lines.

Each check is a function of a root folder (or a text), so the tests at the end plant a broken
link, a missing path, a hash, an issue number and an unused caption in a scratch folder and
show that each check reports it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 220
SOURCE_EXTENSIONS = {".py", ".smk", ".rst", ".yaml", ".yml", ".toml", ".cff", ".md", ".sh"}
RUN_ROOTS = {"results", "logs", ".snakemake", ".venv", "tiny", "study"}  # run folders
# Files of other projects (or a user's own) that the docs name on purpose.
EXTERNAL = {
    "make_cifar_c.py",  # hendrycks/robustness, the CIFAR-10-C generator
    "make_imagenet_c.py",  # hendrycks/robustness, the ImageNet-C generator
    "mysite.yaml",  # the user's config overlay in the cluster examples
    "mysite/config.yaml",  # the user's site profile in the cluster examples
    "partitions.yaml",  # the SLURM plugin's partition file, the user's own
}
NOT_SCANNED = {".git", "__pycache__", ".pytest_cache", *RUN_ROOTS}

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"`([^`]+)`")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
HEX = re.compile(
    r"(?<![0-9A-Za-z])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![0-9A-Za-z])"
)
ISSUE = re.compile(r"\bissues?\s*#?\s*\d+", re.I)


def pages(root: Path) -> list[Path]:
    """The Markdown pages checked: README.md, CHANGELOG.md and docs/*.md."""
    found = [root / "README.md", root / "CHANGELOG.md", *sorted((root / "docs").glob("*.md"))]
    return [p for p in found if p.is_file()]


def without_fences(text: str) -> str:
    """``text`` with its fenced code blocks blanked out."""
    return FENCE.sub("", text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading's text."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(without_fences(page.read_text(encoding="utf-8"))):
        a = anchor(heading)
        n = seen.get(a, 0)
        out.add(a if n == 0 else f"{a}-{n}")
        seen[a] = n + 1
    return out


def link_problems(root: Path) -> list[str]:
    """Links of the pages whose file or anchor does not exist."""
    problems = []
    for page in pages(root):
        for target in LINK.findall(without_fences(page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
                continue
            file, _, frag = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(root)}: link {target!r}"
            if not dest.exists():
                problems.append(f"{where}: {file} does not exist")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                problems.append(f"{where}: no heading #{frag} in {dest.relative_to(root)}")
    return problems


def top_level(root: Path) -> set[str]:
    """The repository's top-level entries (not the run's or the tools' folders)."""
    return {p.name for p in root.iterdir() if p.name not in NOT_SCANNED}


def repo_file_names(root: Path) -> set[str]:
    """The names of every file of the repository (outside run and tool folders)."""
    names = set()
    for entry in root.iterdir():
        if entry.name in NOT_SCANNED:
            continue
        files = [entry] if entry.is_file() else entry.rglob("*")
        names |= {f.name for f in files if f.is_file() and "__pycache__" not in f.parts}
    return names


def is_repo_path(token: str, tops: set[str]) -> bool:
    """Whether a code span is a claim about a file of the repository (see the module's rules)."""
    if re.search(r"\s|[*?\[\]<>{}$~=:]|\.\.\.", token) or token.startswith(("/", "-", "#")):
        return False
    if token in EXTERNAL or token.split("/")[0] in RUN_ROOTS:
        return False
    return token.split("/")[0] in tops or Path(token.rstrip("/")).suffix in SOURCE_EXTENSIONS


def path_problems(root: Path) -> list[str]:
    """Backticked repository paths of the pages that do not exist."""
    tops, names = top_level(root), repo_file_names(root)
    problems = []
    for page in pages(root):
        for token in CODE.findall(without_fences(page.read_text(encoding="utf-8"))):
            if not is_repo_path(token, tops):
                continue
            if "/" in token:
                path = root / token
                ok = path.is_dir() if token.endswith("/") else path.exists()
            else:
                ok = token in names or (root / token).exists()
            if not ok:
                problems.append(f"{page.relative_to(root)}: `{token}` is not in the repository")
    return problems


def hash_problems(text: str) -> list[str]:
    """Words of ``text`` that look like commit hashes (see the module's rule 3)."""
    problems = []
    for m in HEX.finditer(text):
        before = text[max(0, m.start() - 24) : m.start()].lower()
        if "sha256" in before or "md5" in before or text[m.end() : m.end() + 3] == "...":
            continue
        line = text.count("\n", 0, m.start()) + 1
        problems.append(f"line {line}: {m.group()!r} looks like a commit hash")
    return problems


def issue_problems(text: str) -> list[str]:
    """References to the issue tracker in ``text``."""
    return [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group()!r}" for m in ISSUE.finditer(text)
    ]


def caption_problems(root: Path) -> list[str]:
    """Report captions (``workflow/report/*.rst``) that no rule names."""
    rules = [root / "Snakefile", *sorted((root / "workflow" / "rules").glob("*.smk"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in rules if p.is_file())
    return [
        f"workflow/report/{rst.name} is used by no rule"
        for rst in sorted((root / "workflow" / "report").glob("*.rst"))
        if rst.name not in text
    ]


# ------------------------------------------------------------------------------------------
# The repository's docs
# ------------------------------------------------------------------------------------------


def test_every_link_resolves():
    problems = link_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_every_backticked_repository_path_exists():
    problems = path_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_readme_holds_no_commit_hash_or_issue_number():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    problems = hash_problems(text) + issue_problems(text)
    assert not problems, "\n".join(problems)


def test_every_report_caption_is_used_by_a_rule():
    problems = caption_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES})"


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    unlinked = [
        p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"(docs/{p.name}" not in readme
    ]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


# ------------------------------------------------------------------------------------------
# Each check fails on a planted fault
# ------------------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A scratch repository: a README, one docs page, a source file, a rule and two captions."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("")
    (tmp_path / "workflow" / "rules").mkdir(parents=True)
    (tmp_path / "workflow" / "report").mkdir()
    (tmp_path / "workflow" / "report" / "used.rst").write_text("")
    (tmp_path / "workflow" / "rules" / "a.smk").write_text('caption="../report/used.rst"\n')
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Some section: here\n")
    (tmp_path / "README.md").write_text(
        "# Title\n\nSee [the page](docs/page.md#some-section-here) and `src/pkg/mod.py`, "
        "`mod.py`, `results/tables/x.md`, `results/{a}/b.md`, `<dir>/x.py`, `make_cifar_c.py`.\n"
        "```\nnot/checked.py [no](nowhere.md)\n```\n"
    )
    return tmp_path


def test_the_scratch_repository_passes(site):
    assert link_problems(site) == []
    assert path_problems(site) == []
    assert caption_problems(site) == []


def test_a_broken_link_fails(site):
    page = site / "docs" / "page.md"
    page.write_text(page.read_text() + "\n[gone](missing.md) [bad anchor](../README.md#nope)\n")
    problems = link_problems(site)
    assert len(problems) == 2
    assert "missing.md does not exist" in problems[0] and "no heading #nope" in problems[1]


def test_a_missing_repository_path_fails(site):
    readme = site / "README.md"
    readme.write_text(
        readme.read_text() + "\n`src/pkg/gone.py` and `renamed.smk` and `src/nope/`\n"
    )
    problems = path_problems(site)
    assert [p.split("`")[1] for p in problems] == ["src/pkg/gone.py", "renamed.smk", "src/nope/"]


def test_a_commit_hash_fails():
    assert hash_problems("fixed in commit e00eb59 (2026)") == [
        "line 1: 'e00eb59' looks like a commit hash"
    ]
    assert hash_problems("a0770cee4c5ca20b8c32bbd61e114805 and 19d442d13458")  # two hashes
    # checksums and ordinary words pass
    ok = "sha256 79f3f155...1397, md5 c58f30108f718f92721af3b95e74349a, deadbeef, 2026, a100, e2e"
    assert hash_problems(ok) == []


def test_an_issue_number_fails():
    assert issue_problems("as issue 12 found") == ["line 1: 'issue 12'"]
    assert issue_problems("see issues #3") and issue_problems("Issue 27:")
    assert issue_problems("an issue with 2 GPUs is fine") == []


def test_an_unused_caption_fails(site):
    (site / "workflow" / "report" / "orphan.rst").write_text("")
    assert caption_problems(site) == ["workflow/report/orphan.rst is used by no rule"]
