"""Raw data as people actually have it: files re-saved by pandas or a spreadsheet, trees unpacked
one level off or with macOS clutter, upper-case extensions. Each variant of an official file must
prepare exactly like the file itself; a file that really differs gets an error saying what.
"""

from __future__ import annotations

import csv
import shutil
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from robustkd.data import camelyon17, imagenet100, resisc45
from robustkd.data.archives import read_checksum_file
from robustkd.data.rawfiles import read_csv_table
from robustkd.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
CLASS_LIST = ROOT / "config" / "imagenet100.txt"


def _manifest(out: Path) -> list[tuple[str, str, str]]:
    """(split, label, image name) of every prepared image, sorted."""
    rows = pd.read_csv(out / "manifest.csv", dtype=str)
    return sorted(zip(rows["split"], rows["label"], rows["path"].str.lower(), strict=True))


def _excel(df: pd.DataFrame, path: Path) -> None:
    """What a German-locale spreadsheet writes: BOM, CRLF, ';', every field quoted."""
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(df.columns)
        writer.writerows(df.itertuples(index=False))


# --------------------------------------------------------------------------- CAMELYON17


@pytest.fixture(scope="module")
def camelyon(tmp_path_factory):
    """The miniature release and its prepared manifest (the reference)."""
    raw = tmp_path_factory.mktemp("camelyon")
    camelyon17.write_demo_raw(raw, seed=0, patients_per_center=1, patches_per_node=2, size=16)
    out = tmp_path_factory.mktemp("ref") / "camelyon17"
    camelyon17.prepare(raw, out)
    return raw, _manifest(out)


def _camelyon_copy(camelyon, tmp_path: Path, sub: str = "camelyon17_v1.0") -> Path:
    raw, _ = camelyon
    dest = tmp_path / "root" / sub
    shutil.copytree(raw / "camelyon17_v1.0", dest)
    return dest


def _metadata(data: Path) -> pd.DataFrame:
    return pd.read_csv(data / "metadata.csv", index_col=0)


@pytest.mark.parametrize(
    "resave",
    [
        # pandas without its index: the case once reported as "missing column 'patient'"
        lambda df, p: df.to_csv(p, index=False),
        # columns in another order, an extra column, the index kept
        lambda df, p: df.assign(note="x")[["note", "split", *df.columns[:-1]]].to_csv(p),
        # a spreadsheet: BOM, CRLF, ';', quoted fields, whole numbers written as 1.0
        lambda df, p: _excel(df.astype(float).reset_index(), p),
        # R's write.csv: quoted header without a name for the index column
        lambda df, p: df.to_csv(p, quoting=csv.QUOTE_NONNUMERIC, index_label=False),
    ],
    ids=["no-index", "reordered-extra", "spreadsheet", "r-style"],
)
def test_camelyon_metadata_resaved_prepares_the_same(camelyon, tmp_path, resave):
    data = _camelyon_copy(camelyon, tmp_path)
    resave(_metadata(data), data / "metadata.csv")
    out = tmp_path / "out"
    camelyon17.prepare(tmp_path / "root", out)
    assert _manifest(out) == camelyon[1]


@pytest.mark.parametrize("layout", ["contents-in-root", "nested-twice", "one-folder-deeper"])
def test_camelyon_folder_unpacked_one_level_off(camelyon, tmp_path, layout):
    sub = {
        "contents-in-root": ".",
        "nested-twice": "camelyon17_v1.0/camelyon17_v1.0",
        "one-folder-deeper": "download/camelyon17_v1.0",
    }[layout]
    data = _camelyon_copy(camelyon, tmp_path, sub)
    (data.parent / "__MACOSX").mkdir(exist_ok=True)
    (data / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    out = tmp_path / "out"
    camelyon17.prepare(tmp_path / "root", out)
    assert _manifest(out) == camelyon[1]


def test_camelyon_archive_in_root_and_upper_case_png(camelyon, tmp_path):
    data = _camelyon_copy(camelyon, tmp_path, "staging")
    first = next((data / "patches").rglob("*.png"))
    first.rename(first.with_suffix(".PNG"))
    root = tmp_path / "archive_root"
    root.mkdir()
    with tarfile.open(root / "camelyon17_v1.0.tgz", "w:gz") as tf:  # .tgz, contents at top
        for item in sorted(data.iterdir()):
            tf.add(item, arcname=item.name)
    out = tmp_path / "out"
    camelyon17.prepare(root, out)
    assert _manifest(out) == camelyon[1]
    assert (root / "camelyon17_v1.0" / "metadata.csv").is_file()


def _expect(prepare, root: Path, out: Path, *needles: str, **kw) -> str:
    with pytest.raises(DataError) as info:
        prepare(root, out, **kw)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert not out.exists()
    return message


def test_camelyon_metadata_that_really_differs_says_what(camelyon, tmp_path):
    data = _camelyon_copy(camelyon, tmp_path)
    meta, path = _metadata(data), data / "metadata.csv"
    meta.rename(columns={"center": "hospital"}).to_csv(path)
    _expect(
        camelyon17.prepare,
        tmp_path / "root",
        tmp_path / "out",
        f"{path}: no column 'center' in the header (found: ,patient,node,x_coord,y_coord,tumor,"
        "slide,hospital,split); the official file's header is "
        "',patient,node,x_coord,y_coord,tumor,slide,center,split'",
    )
    bad = meta.astype(object)
    bad.iloc[3, bad.columns.get_loc("tumor")] = "yes"
    bad.to_csv(path)
    _expect(
        camelyon17.prepare,
        tmp_path / "root",
        tmp_path / "out",
        f"{path}, line 5: column 'tumor' holds 'yes', not a whole number",
    )
    meta.iloc[2, meta.columns.get_loc("tumor")] = 2
    meta.to_csv(path)
    _expect(
        camelyon17.prepare,
        tmp_path / "root",
        tmp_path / "out",
        f"{path}, line 4: column 'tumor' is 2; the release has 0 or 1",
    )


def test_two_copies_of_the_release_are_ambiguous(camelyon, tmp_path):
    _camelyon_copy(camelyon, tmp_path)
    _camelyon_copy(camelyon, tmp_path, "old/camelyon17_v1.0")
    _expect(camelyon17.prepare, tmp_path / "root", tmp_path / "out", "2 copies of the data")


# --------------------------------------------------------------------------- RESISC45


@pytest.fixture(scope="module")
def resisc(tmp_path_factory):
    raw = tmp_path_factory.mktemp("resisc")
    resisc45.write_demo_raw(raw, seed=0, per_class=3, size=16)
    sums = read_checksum_file(raw / "MD5SUMS")
    out = tmp_path_factory.mktemp("ref") / "resisc45"
    resisc45.prepare(raw, out, md5_overrides=sums)
    return raw, sums, _manifest(out)


def _resisc_lists(raw: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split in resisc45.SPLITS:
        shutil.copy(raw / f"resisc45-{split}.txt", root)


def test_resisc_lists_resaved_with_crlf_and_bom_pass_the_md5(resisc, tmp_path):
    raw, sums, reference = resisc
    root = tmp_path / "root"
    _resisc_lists(raw, root)
    shutil.copy(raw / "NWPU-RESISC45.zip", root)
    for split in resisc45.SPLITS:
        path = root / f"resisc45-{split}.txt"
        names = path.read_text().split()
        path.write_bytes(("\ufeff" + "\r\n".join(names) + "\r\n\r\n").encode())
    out = tmp_path / "out"
    resisc45.prepare(root, out, md5_overrides=sums)
    assert _manifest(out) == reference
    path = root / "resisc45-val.txt"
    path.write_text(path.read_text().replace("airplane", "airport", 1))
    _expect(
        resisc45.prepare,
        root,
        tmp_path / "out2",
        f"{path}: md5 mismatch",
        "names are not the official list, even ignoring line endings, BOM and blank lines",
        md5_overrides=sums,
    )


@pytest.mark.parametrize("layout", ["windows-nested", "contents-in-root"])
def test_resisc_tree_unpacked_by_hand_with_clutter(resisc, tmp_path, layout):
    """Windows' "Extract all" (a folder inside a folder), or the class folders straight in
    root; with macOS clutter and upper-case extensions. Prepares like the zip."""
    raw, sums, reference = resisc
    root = tmp_path / "root"
    _resisc_lists(raw, root)
    into = root / "NWPU-RESISC45" if layout == "windows-nested" else root / "tmp"
    with zipfile.ZipFile(raw / "NWPU-RESISC45.zip") as zf:
        zf.extractall(into)
    if layout == "contents-in-root":
        for cls in (into / "NWPU-RESISC45").iterdir():
            cls.rename(root / cls.name)
        shutil.rmtree(into)
        tree = root
    else:
        tree = into / "NWPU-RESISC45"
    (tree / "__MACOSX").mkdir()
    (tree / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tree / "airplane" / "._airplane_001.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    for image in (tree / "beach").iterdir():
        image.rename(image.with_suffix(".JPG"))
    lists = {k: v for k, v in sums.items() if k.endswith(".txt")}
    out = tmp_path / "out"
    resisc45.prepare(root, out, md5_overrides=lists)
    assert _manifest(out) == reference


# --------------------------------------------------------------------------- ImageNet-100


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    raw = tmp_path_factory.mktemp("ilsvrc")
    kw = dict(class_list=CLASS_LIST, n_classes=3, train_per_class=2, val_per_class=2, size=16)
    imagenet100.write_demo_raw(raw, seed=1, **kw)
    out = tmp_path_factory.mktemp("ref") / "imagenet100"
    imagenet100.prepare(raw, out, class_list=CLASS_LIST, n_classes=3)
    return raw, _manifest(out)


@pytest.mark.parametrize(
    "resave",
    [
        # a BOM: once reported as "expected columns ImageId,PredictionString", both present
        lambda df, p: df.to_csv(p, index=False, encoding="utf-8-sig"),
        lambda df, p: df[["PredictionString", "ImageId"]].to_csv(p),  # index, other order
        lambda df, p: _excel(df.assign(ImageId=df["ImageId"] + ".JPEG"), p),
    ],
    ids=["bom", "index-reordered", "spreadsheet-with-extensions"],
)
def test_val_label_file_resaved_prepares_the_same(ilsvrc, tmp_path, resave):
    raw, reference = ilsvrc
    root = tmp_path / "ILSVRC2012"
    shutil.copytree(raw, root)
    labels = root / "LOC_val_solution.csv"
    resave(pd.read_csv(labels, dtype=str), labels)
    out = tmp_path / "out"
    imagenet100.prepare(root, out, class_list=CLASS_LIST, n_classes=3)
    assert _manifest(out) == reference


def test_ilsvrc_one_folder_deeper_with_macos_copies(ilsvrc, tmp_path):
    raw, reference = ilsvrc
    tree = tmp_path / "root" / "ILSVRC2012"
    shutil.copytree(raw, tree)
    for image in list((tree / "train").rglob("*.JPEG"))[:3] + list((tree / "val").iterdir())[:2]:
        (image.parent / f"._{image.name}").write_bytes(b"\0\5\26\7 AppleDouble")
    (tree.parent / "__MACOSX").mkdir()
    out = tmp_path / "out"
    imagenet100.prepare(tmp_path / "root", out, class_list=CLASS_LIST, n_classes=3)
    assert _manifest(out) == reference


def test_val_label_file_that_really_differs_says_what(ilsvrc, tmp_path):
    raw, _ = ilsvrc
    root = tmp_path / "ILSVRC2012"
    shutil.copytree(raw, root)
    labels = root / "LOC_val_solution.csv"
    df = pd.read_csv(labels, dtype=str)
    df.rename(columns={"PredictionString": "Label"}).to_csv(labels, index=False)
    _expect(
        imagenet100.prepare,
        root,
        tmp_path / "out",
        f"{labels}: no column 'PredictionString' in the header (found: ImageId,Label); "
        "the official file's header is 'ImageId,PredictionString'",
        class_list=CLASS_LIST,
        n_classes=3,
    )
    df.loc[1, "PredictionString"] = "cat 1 2 3 4"
    df.to_csv(labels, index=False)
    _expect(
        imagenet100.prepare,
        root,
        tmp_path / "out",
        f"{labels}, line 3: PredictionString 'cat 1 2 3 4' of {df.loc[1, 'ImageId']} does not "
        "start with a wnid",
        class_list=CLASS_LIST,
        n_classes=3,
    )


# --------------------------------------------------------------------------- the shared reader


def test_csv_reader_line_numbers_and_repeated_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    table = read_csv_table(path, ("c", "a"), release="a,b,c")
    assert table.to_dict("index") == {2: {"c": "3", "a": "1"}, 3: {"c": "6", "a": "4"}}
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError, match=r"t.csv: column 'a' appears twice"):
        read_csv_table(path, ("a", "b"), release="a,b")
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(DataError, match=r"t.csv: malformed CSV"):
        read_csv_table(path, ("a", "b"), release="a,b")
