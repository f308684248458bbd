"""Every PNG/TIFF pixel mode reads as the same correct 8-bit RGB on every decode path (issue 26).

Each case writes a small image in one mode and compares what the preparation's check, the
prepared-image loader (:meth:`PreparedDataset.image`, ``load_split``, the preloaded view) and
the engines' :class:`ImageSource` decode with a hand-computed 8-bit expectation. 16-bit values
``v`` read as their high byte ``v >> 8`` (what PIL does for 16-bit RGB PNGs too). Modes with no
8-bit scale (``I``, ``F``) are refused naming the file and the mode, leaving nothing written.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustkd.data import camelyon17, resisc45
from robustkd.data.archives import read_checksum_file
from robustkd.data.prepared import PreparedDataset, PreparedWriter
from robustkd.engine.data import ViewConfig, load_image_set
from robustkd.engine.decode import ImageSource
from robustkd.errors import DataError

H, W = 5, 7
RNG = np.random.default_rng(26)
U8 = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
U16 = RNG.integers(0, 65536, (H, W, 4), dtype=np.uint16)
U16[0, :4, 0] = (65280, 65535, 257 * 155, 155 << 8)  # an 8-bit value re-saved either way
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)


def _grey(v: np.ndarray) -> np.ndarray:
    return np.repeat(v[..., None], 3, axis=-1).astype(np.uint8)


def _png16(path: Path, arr: np.ndarray, colour_type: int) -> None:
    """Write a 16-bit PNG by hand (PIL cannot write 16-bit colour): arr uint16 (H, W, C)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    head = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _save(mode: str, arr: np.ndarray, fmt: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        im = Image.frombytes(mode, (W, H), np.ascontiguousarray(arr).tobytes())
        if mode in ("P", "PA"):
            im.putpalette(PALETTE.tobytes())
        im.save(path, fmt)

    return write


def _paletted(p: np.ndarray) -> np.ndarray:
    return PALETTE[p]


def _cmyk(a: np.ndarray) -> np.ndarray:
    return np.rint((255.0 - a[..., :3]) * (255.0 - a[..., 3:4]) / 255.0)


def _ycbcr(a: np.ndarray) -> np.ndarray:  # JFIF
    y, cb, cr = (a[..., i].astype(float) for i in range(3))
    rgb = [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)]
    return np.clip(np.stack([*rgb, y + 1.772 * (cb - 128)], -1), 0, 255)


def _lab_grey(lightness: np.ndarray) -> np.ndarray:  # a* = b* = 0: CIE L* to sRGB grey
    big_l = lightness.astype(float) * 100 / 255
    lum = np.where(big_l > 8, ((big_l + 16) / 116) ** 3, big_l / 903.3)
    srgb = np.where(lum > 0.0031308, 1.055 * lum ** (1 / 2.4) - 0.055, 12.92 * lum)
    return _grey(np.rint(255 * srgb))


# PIL's LAB bytes hold a* and b* as signed bytes: zeros are the neutral greys.
LAB = np.stack([U8[..., 0], np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)], -1)

# name -> (writer of the file, expected uint8 (H, W, 3), tolerance in grey levels).
CASES: dict[str, tuple[Callable[[Path], None], np.ndarray, int]] = {
    "1.png": (
        lambda p: Image.fromarray(U8[..., 0] > 127).save(p),
        _grey(U8[..., 0] > 127) * 255,
        0,
    ),
    "L.png": (_save("L", U8[..., 0], "PNG"), _grey(U8[..., 0]), 0),
    "LA.png": (_save("LA", U8[..., :2], "PNG"), _grey(U8[..., 0]), 0),
    "P.png": (_save("P", U8[..., 0], "PNG"), _paletted(U8[..., 0]), 0),
    "PA.tif": (_save("PA", U8[..., :2], "TIFF"), _paletted(U8[..., 0]), 0),
    "RGB.png": (_save("RGB", U8[..., :3], "PNG"), U8[..., :3], 0),
    "RGBA.png": (_save("RGBA", U8, "PNG"), U8[..., :3], 0),
    "RGBA.tif": (_save("RGBA", U8, "TIFF"), U8[..., :3], 0),
    "CMYK.tif": (_save("CMYK", U8, "TIFF"), _cmyk(U8), 1),
    "YCbCr.tif": (_save("YCbCr", U8[..., :3], "TIFF"), _ycbcr(U8[..., :3]), 1),
    "LAB.tif": (_save("LAB", LAB, "TIFF"), _lab_grey(LAB[..., 0]), 1),
    "I;16.png": (_save("I;16", U16[..., 0], "PNG"), _grey(U16[..., 0] >> 8), 0),
    "I;16.tif": (_save("I;16", U16[..., 0], "TIFF"), _grey(U16[..., 0] >> 8), 0),
    "I;16B.tif": (
        _save("I;16B", U16[..., 0].astype(">u2"), "TIFF"),
        _grey(U16[..., 0] >> 8),
        0,
    ),
    "RGB16.png": (lambda p: _png16(p, U16[..., :3], 2), U16[..., :3] >> 8, 0),
    "RGBA16.png": (lambda p: _png16(p, U16, 6), U16[..., :3] >> 8, 0),
    "LA16.png": (lambda p: _png16(p, U16[..., :2], 4), _grey(U16[..., 0] >> 8), 0),
}
REFUSED = {
    "I.tif": ("I", _save("I", U16[..., 0].astype(np.int32), "TIFF")),
    "F.tif": ("F", _save("F", U16[..., 0].astype(np.float32) / 65535, "TIFF")),
}


def _all_paths(path: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    """The file decoded by every decode path: name -> uint8 (H, W, 3)."""
    out = tmp_path / "prepared"
    with PreparedWriter(out, ["a"], link=False) as writer:  # check_image
        writer.add_file("train", 0, path, path.name)
    ds = PreparedDataset(out)
    stored = out / ds.rows[0].path
    preloaded = load_image_set(ds, "train", ViewConfig(size=8), train=False, preload_size=W)
    return {
        "PreparedDataset.image": np.asarray(ds.image(0)),
        "load_split": ds.load_split("train")[0][0],
        "ImageSource.tensor": ImageSource.from_file(stored).tensor().permute(1, 2, 0).numpy(),
        "preload": np.asarray(Image.fromarray(preloaded.cache[0].numpy()).resize((W, H))),
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_mode_reads_as_the_hand_computed_8bit_rgb_on_every_path(name, tmp_path):
    write, expected, tol = CASES[name]
    path = tmp_path / name.replace(";", "_")
    write(path)
    for where, got in _all_paths(path, tmp_path).items():
        if where == "preload":  # resized to W x W and back: only checks it is not clipped
            assert abs(got.mean() - expected.mean()) < 12, (name, where)
            continue
        assert got.dtype == np.uint8 and got.shape == (H, W, 3), (name, where)
        diff = np.abs(got.astype(int) - expected.astype(int)).max()
        assert diff <= tol, (name, where, diff)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_mode_without_an_8bit_scale_is_refused_naming_file_and_mode(name, tmp_path):
    mode, write = REFUSED[name]
    path = tmp_path / name
    write(path)
    out = tmp_path / "prepared"
    with pytest.raises(DataError) as info, PreparedWriter(out, ["a"]) as writer:
        writer.add_file("train", 0, path, name)
    assert str(path) in str(info.value) and f"mode {mode!r}" in str(info.value)
    assert "8-bit" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(DataError, match=f"{name}: pixel mode '{mode}'"):
        ImageSource.from_file(path).tensor()


def _camelyon(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    raw = tmp_path / "raw"
    camelyon17.write_demo_raw(raw, seed=0, patients_per_center=1, patches_per_node=1, size=16)
    meta = pd.read_csv(raw / "camelyon17_v1.0" / "metadata.csv", index_col=0)
    r = meta.iloc[0]
    patch = camelyon17.patch_path(raw / "camelyon17_v1.0", r.patient, r.node, r.x_coord, r.y_coord)
    with Image.open(patch) as im:
        grey = np.asarray(im.convert("L"))
    return raw, patch, grey


@pytest.mark.parametrize(
    "widen", [lambda v: v * 257, lambda v: v << 8], ids=["times-257", "shift-8"]
)
def test_camelyon_patch_resaved_as_16bit_grey_reads_as_its_8bit_original(widen, tmp_path):
    raw, patch, grey = _camelyon(tmp_path)
    Image.fromarray(widen(grey.astype(np.uint16))).save(patch)
    with Image.open(patch) as im:
        assert im.mode == "I;16"
    out = tmp_path / "out"
    camelyon17.prepare(raw, out, md5_overrides=read_checksum_file(raw / "MD5SUMS"))
    ds = PreparedDataset(out)
    row = next(i for i, r in enumerate(ds.rows) if r.path.endswith(patch.name))
    assert np.array_equal(np.asarray(ds.image(row)), _grey(grey))
    source = ImageSource.from_file(out / ds.rows[row].path)
    assert np.array_equal(source.tensor().permute(1, 2, 0).numpy(), _grey(grey))


def test_camelyon_and_resisc_refuse_a_float_image_naming_it(tmp_path):
    raw, patch, grey = _camelyon(tmp_path / "c")
    Image.fromarray(grey.astype(np.float32)).save(patch, "TIFF")  # a .png name, TIFF bytes
    with pytest.raises(DataError, match=f"{patch.name}: pixel mode 'F'"):
        camelyon17.prepare(raw, tmp_path / "c" / "out", md5_overrides={})
    assert not (tmp_path / "c" / "out").exists()

    raw = tmp_path / "r" / "raw"
    resisc45.write_demo_raw(raw, seed=0, per_class=5, size=16)
    root = tmp_path / "r" / "root"
    root.mkdir()
    for name in resisc45.OFFICIAL_MD5:
        if name.endswith(".txt"):
            shutil.copy(raw / name, root / name)
    with zipfile.ZipFile(raw / "NWPU-RESISC45.zip") as zf:
        zf.extractall(root)
    victim = (root / "resisc45-val.txt").read_text().split()[0]
    image = root / "NWPU-RESISC45" / victim.rsplit("_", 1)[0] / victim
    Image.fromarray(np.zeros((16, 16), np.int32)).save(image, "TIFF")
    with pytest.raises(DataError, match=f"{victim}: pixel mode 'I'"):
        resisc45.prepare(
            root, tmp_path / "r" / "out", md5_overrides=read_checksum_file(raw / "MD5SUMS")
        )
    assert not (tmp_path / "r" / "out").exists()


def test_mode_i_of_a_png_reads_as_16_bits_and_of_a_tiff_is_refused():
    """Older Pillow versions open a 16-bit greyscale PNG as mode I (int32 holding 0..65535)."""
    from robustkd.data.pixels import to_rgb8

    im = Image.fromarray(U16[..., 0].astype(np.int32))
    assert im.mode == "I"
    im.format = "PNG"
    assert np.array_equal(np.asarray(to_rgb8(im, "x.png")), _grey(U16[..., 0] >> 8))
    im.format = "TIFF"
    with pytest.raises(DataError, match="x.tif: pixel mode 'I' \\(32-bit signed integers\\)"):
        to_rgb8(im, "x.tif")
