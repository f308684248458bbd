import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustkd.data.archives import extract_archive, fetch_file, md5sum, read_checksum_file
from robustkd.data.prepared import PreparedDataset, PreparedWriter
from robustkd.errors import DataError


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_extract_tar_and_zip(tmp_path):
    t = _tar(tmp_path / "a.tar.gz", {"top/x.txt": b"x", "top/sub/y.txt": b"yy"})
    out = extract_archive(t, tmp_path / "out_tar")
    assert (out / "top" / "sub" / "y.txt").read_bytes() == b"yy"
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("top/x.txt", "x")
    assert (extract_archive(z, tmp_path / "out_zip") / "top" / "x.txt").read_text() == "x"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "top/../../evil.txt"])
def test_member_escaping_is_refused(tmp_path, name):
    t = _tar(tmp_path / "evil.tar.gz", {"ok.txt": b"1", name: b"2"})
    with pytest.raises(DataError, match="evil.tar.gz.*escapes"):
        extract_archive(t, tmp_path / "sub" / "out")
    assert _leftovers(tmp_path / "sub") == []
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_escaping_is_refused(tmp_path):
    t = tmp_path / "link.tar"
    with tarfile.open(t, "w") as tf:
        info = tarfile.TarInfo("top/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../../etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="link.tar.*escapes"):
        extract_archive(t, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_member_escaping_is_refused(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match="evil.zip.*escapes"):
        extract_archive(z, tmp_path / "out")
    assert _leftovers(tmp_path) == ["evil.zip"]


def test_truncated_archive(tmp_path):
    payload = np.random.default_rng(0).bytes(200_000)
    t = _tar(tmp_path / "t.tar.gz", {"top/big.bin": payload})
    t.write_bytes(t.read_bytes()[: len(t.read_bytes()) // 2])
    with pytest.raises(DataError, match="t.tar.gz.*truncated or corrupt"):
        extract_archive(t, tmp_path / "out")
    assert _leftovers(tmp_path) == ["t.tar.gz"]


def test_truncated_zip_is_called_truncated(tmp_path):
    """A zip cut short has no central directory: it is a truncated zip, not an unknown format."""
    payload = np.random.default_rng(0).bytes(50_000)
    z = tmp_path / "NWPU-RESISC45.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("top/big.bin", payload)
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(DataError) as info:
        extract_archive(z, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{z}: truncated or corrupt zip archive")
    assert "not a zip or tar" not in message and "download or copy it again" in message
    assert _leftovers(tmp_path) == ["NWPU-RESISC45.zip"]
    z.write_bytes(b"")
    with pytest.raises(DataError, match=r"NWPU-RESISC45.zip: empty file \(0 bytes\): truncated"):
        extract_archive(z, tmp_path / "out")


@pytest.mark.parametrize("name", ["t.tgz", "t.TAR.GZ", "t.download", "t.tar"])
def test_tar_recognised_by_content_whatever_its_name(tmp_path, name):
    path = tmp_path / name
    if name == "t.tar":
        with tarfile.open(path, "w") as tf:
            info = tarfile.TarInfo("top/a.txt")
            info.size = 2
            tf.addfile(info, io.BytesIO(b"hi"))
    else:
        _tar(path, {"top/a.txt": b"hi"})
    extract_archive(path, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "a.txt").read_bytes() == b"hi"


def test_not_an_archive_says_so(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("<html>404</html>")
    with pytest.raises(DataError, match="page.html: not a zip or tar archive"):
        extract_archive(path, tmp_path / "out")
    assert _leftovers(tmp_path) == ["page.html"]


def test_corrupt_zip_member(tmp_path):
    z = tmp_path / "c.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("top/data.bin", b"A" * 1000)
    raw = bytearray(z.read_bytes())
    raw[raw.index(b"A" * 10) + 5] = ord("B")
    z.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="c.zip.*corrupt"):
        extract_archive(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fetch_verifies_md5(tmp_path):
    f = tmp_path / "file.bin"
    f.write_bytes(b"hello")
    assert fetch_file(tmp_path, "file.bin", md5sum(f)) == f
    with pytest.raises(DataError, match=r"file.bin: md5 mismatch .*bytes\): not the expected"):
        fetch_file(tmp_path, "file.bin", "0" * 32)
    with pytest.raises(DataError, match="missing.bin: file not found.*download"):
        fetch_file(tmp_path, "missing.bin", None, url="http://example.invalid/x", download=False)


def test_checksum_file(tmp_path):
    (tmp_path / "MD5SUMS").write_text(f"{'a' * 32}  x.tar.gz\n\n{'B' * 32} *y.zip\n")
    assert read_checksum_file(tmp_path / "MD5SUMS") == {"x.tar.gz": "a" * 32, "y.zip": "b" * 32}
    (tmp_path / "BAD").write_text("nonsense\n")
    with pytest.raises(DataError, match="BAD:1: malformed"):
        read_checksum_file(tmp_path / "BAD")


def _png(path, colour):
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_writer_roundtrip_files_and_arrays(tmp_path):
    a = _png(tmp_path / "a.png", (255, 0, 0))
    b = _png(tmp_path / "b.png", (0, 0, 255))
    arr = np.zeros((3, 4, 4, 3), np.uint8)
    arr[1] = 7
    out = tmp_path / "prep"
    with PreparedWriter(out, ["red", "blue"], provenance={"rule": "test"}) as w:
        w.add_file("train", 0, a, name="red/a.png")
        w.add_file("train", 1, b, name="blue/b.png")
        w.add_array("test", arr, [0, 1, 1])
    ds = PreparedDataset(out)
    assert ds.classes == ["red", "blue"]
    assert ds.splits == ["train", "test"]
    assert (out / "images" / "train" / "red" / "a.png").is_symlink()
    images, labels = ds.load_split("train")
    assert labels.tolist() == [0, 1]
    assert images[0, 0, 0].tolist() == [255, 0, 0] and images[1, 0, 0].tolist() == [0, 0, 255]
    t_images, t_labels = ds.load_split("test")
    assert t_labels.tolist() == [0, 1, 1] and t_images[1].max() == 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_writer_leaves_nothing_on_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "prep"
    with pytest.raises(DataError, match="bad.png: unreadable image"):
        with PreparedWriter(out, ["x"]) as w:
            w.add_file("train", 0, _png(tmp_path / "ok.png", (1, 2, 3)), name="ok.png")
            w.add_file("train", 0, bad, name="bad.png")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "ok.png"]


def test_writer_refuses_out_of_range_label(tmp_path):
    with pytest.raises(DataError, match="label 3 outside"):
        with PreparedWriter(tmp_path / "prep", ["a", "b"]) as w:
            w.add_array("train", np.zeros((1, 2, 2, 3), np.uint8), [3])
    assert not (tmp_path / "prep").exists()


def test_incomplete_folder_is_refused(tmp_path):
    (tmp_path / "prep").mkdir()
    (tmp_path / "prep" / "manifest.csv").write_text("split,label,path,index,sha256\n")
    with pytest.raises(DataError, match="classes.txt: missing"):
        PreparedDataset(tmp_path / "prep")


def test_links_inside_the_project_are_relative_so_it_can_move(tmp_path, monkeypatch):
    project = tmp_path / "project"
    raw = project / "results" / "raw"
    raw.mkdir(parents=True)
    a = _png(raw / "a.png", (255, 0, 0))
    outside = _png(tmp_path / "b.png", (0, 0, 255))  # raw data outside the project: absolute
    monkeypatch.chdir(project)
    out = Path("results") / "data" / "toy"
    with PreparedWriter(out, ["red", "blue"], provenance={"rule": "test"}) as w:
        w.add_file("train", 0, a, name="red/a.png")
        w.add_file("train", 1, outside, name="blue/b.png")
    link = out / "images" / "train" / "red" / "a.png"
    assert os.readlink(link) == "../../../../../raw/a.png"  # up from data/toy/images/train/red
    assert Path(os.readlink(out / "images" / "train" / "blue" / "b.png")) == outside.resolve()
    moved = tmp_path / "moved"
    monkeypatch.chdir(tmp_path)
    shutil.move(project, moved)
    images, labels = PreparedDataset(moved / "results" / "data" / "toy").load_split("train")
    assert labels.tolist() == [0, 1] and images[0, 0, 0].tolist() == [255, 0, 0]
