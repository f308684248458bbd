"""Images/s per CPU core of the data path: robustkd's train and eval views against torchvision.

    python benchmarks/data_pipeline.py --files 400 --size 224 --rounds 5

Writes ``--files`` ImageNet-like JPEGs into a temporary folder, then times, in one process with
one thread and on the same files, one pass over them by each pipeline:

- ``robustkd train`` / ``robustkd eval``: :class:`robustkd.engine.data.ImageSet`'s views
  (uint8 out; the float conversion happens later on the device, batched);
- ``robustkd before 16 train`` / ``eval``: the views before issue 16 (commit 47af486,
  re-created here): PIL's full decode, the whole image to float32, crop and resize in float;
- ``floor``: reading the file and decoding it at full size as the train view does (header by
  PIL, pixels by torchvision), without crop or resize: what the views cannot go below when no
  DCT reduction applies;
- ``torchvision classic train``: ``ImageFolder`` + ``RandomResizedCrop`` + ``RandomHorizontalFlip``
  + ``ToTensor``; ``torchvision classic eval``: ``Resize(256/224 * size)`` + ``CenterCrop`` +
  ``ToTensor``.

Pipelines run interleaved (each round: every pipeline on ``--chunk`` images in turn, until all
files are done), ``--rounds`` rounds, so a loaded machine slows all alike; the table gives the
best and the median round of each, then the ratios of the views to the float path, to
torchvision's classic pipeline and to the floor (median over rounds of each round's ratio).

The JPEGs: widths uniform in [400, 640] px, height 3/4 of the width (400x300 to 640x480, as
many ImageNet photos); pixels are a sum of smooth random fields at four scales (bicubic
upsampling of Gaussian noise), 8-20 random filled ellipses and rectangles, a Gaussian blur of
radius 1 px and Gaussian grain (sd 7 levels); saved by PIL at quality 90 (about 64 KB each, the
mean size is printed). No download: numpy and PIL only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter
from torchvision import datasets
from torchvision import transforms as T

from robustkd.data.prepared import PreparedDataset, PreparedWriter
from robustkd.engine.data import ImageSet, ViewConfig, _crop_box, load_image_set, rng_for
from robustkd.engine.decode import ImageSource, dct_reduction


def photo(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """An ImageNet-like RGB image: smooth fields, shapes, blur and grain (see the docstring)."""
    img = np.full((h, w, 3), 128.0, dtype=np.float32)
    for cells, amp in ((4, 70), (16, 40), (64, 22), (160, 14)):
        noise = rng.normal(0, 1, (cells * h // w + 2, cells + 2, 3))
        small = Image.fromarray(np.uint8(np.clip(noise * 40 + 128, 0, 255)))
        img += (np.asarray(small.resize((w, h), Image.BICUBIC), np.float32) - 128) / 40 * amp
    pil = Image.fromarray(np.uint8(np.clip(img, 0, 255)))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(8, 21))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    grain = rng.normal(0, 7, (h, w, 3))
    out = np.asarray(pil.filter(ImageFilter.GaussianBlur(1.0)), np.float32) + grain
    return Image.fromarray(np.uint8(np.clip(out, 0, 255)))


def write_jpegs(root: Path, n: int, seed: int) -> list[Path]:
    """Write ``n`` JPEGs into ``root/c<k>/`` (10 class folders, ImageFolder's layout)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w = int(rng.integers(400, 641))
        path = root / f"c{i % 10}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(rng, w, round(w * 3 / 4)).save(path, quality=90)
        paths.append(path)
    return paths


def prepare(paths: list[Path], out: Path) -> PreparedDataset:
    """The files as a prepared dataset (linked, as the ImageNet-100 reader prepares them)."""
    with PreparedWriter(out, classes=[f"c{k}" for k in range(10)], verify_images=False) as w:
        for p in paths:
            w.add_file("train", int(p.parent.name[1:]), p, f"{p.parent.name}/{p.name}")
    return PreparedDataset(out)


def float_path(ds: ImageSet, i: int) -> torch.Tensor:
    """``ImageSet.__getitem__`` before issue 16 (commit 47af486): float32 (3, S, S) in [0, 1]."""
    pixels = np.array(ds.prepared.image(ds.rows[i]))  # PIL: full decode, convert("RGB")
    img = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    size, (_, h, w) = ds.view.size, img.shape

    def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == hw:
            return x
        return F.interpolate(x[None], size=hw, mode="bilinear", antialias=True)[0]

    if ds.train:
        rng = rng_for(ds.seed, ds.epoch, i)
        top, left, ch, cw = _crop_box(rng, h, w, ds.view.crop_scale, ds.view.crop_ratio)
        img = resize(img[:, top : top + ch, left : left + cw], (size, size))
        if ds.view.hflip and rng.random() < 0.5:
            img = img.flip(-1)
    else:
        scale = int(size * 256 / 224) / min(h, w)
        img = resize(img, (max(size, round(h * scale)), max(size, round(w * scale))))
        _, h, w = img.shape
        top, left = (h - size) // 2, (w - size) // 2
        img = img[:, top : top + size, left : left + size]
    return img.clamp_(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--size", type=int, default=224, help="output side (px)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes per pipeline")
    parser.add_argument("--chunk", type=int, default=20, help="images per interleaving slot")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)  # torchvision 0.29
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    size = args.size

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_jpegs(root / "jpegs", args.files, args.seed)
        kb = statistics.mean(p.stat().st_size for p in paths) / 1024
        prepared = prepare(paths, root / "prepared")
        view = ViewConfig(size=size)
        train = load_image_set(prepared, "train", view, train=True, seed=args.seed)
        val = load_image_set(prepared, "train", view, train=False)
        classic_train = datasets.ImageFolder(
            str(root / "jpegs"),
            T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor()]),
        )
        short = int(size * 256 / 224)
        classic_eval = datasets.ImageFolder(
            str(root / "jpegs"), T.Compose([T.Resize(short), T.CenterCrop(size), T.ToTensor()])
        )
        n = len(train)
        pipelines: dict[str, Callable[[int], object]] = {
            "robustkd train (uint8)": lambda i: train[i],
            "robustkd before 16 train (float32)": lambda i: float_path(train, i),
            "torchvision classic train": lambda i: classic_train[i],
            "robustkd eval (uint8)": lambda i: val[i],
            "robustkd before 16 eval (float32)": lambda i: float_path(val, i),
            "torchvision classic eval": lambda i: classic_eval[i],
            "floor: read + full decode only": lambda i: ImageSource.from_file(paths[i]).tensor(),
        }
        rates: dict[str, list[float]] = {k: [] for k in pipelines}
        for fn in pipelines.values():  # warm-up: page cache, allocator, imports
            for i in range(min(n, 20)):
                fn(i)
        for r in range(args.rounds):
            train.set_epoch(r)  # new crops each round, the same for the two robustkd paths
            spent = dict.fromkeys(pipelines, 0.0)
            for start in range(0, n, args.chunk):  # fine interleaving: load hits all alike
                for name, fn in pipelines.items():
                    t0 = time.perf_counter()
                    for i in range(start, min(n, start + args.chunk)):
                        fn(i)
                    spent[name] += time.perf_counter() - t0
            for name in pipelines:
                rates[name].append(n / spent[name])
        reduced = 0
        for r in range(args.rounds):
            for i in range(n):
                src = train._source(i)
                box = _crop_box(
                    rng_for(args.seed, r, i), src.height, src.width, (0.08, 1.0), (3 / 4, 4 / 3)
                )
                reduced += dct_reduction(box[2], box[3], size, size) > 1

    print(
        f"{n} JPEGs, {kb:.1f} KB mean, 400x300..640x480, output {size} px; one process, "
        f"1 thread; {args.rounds} interleaved rounds; train crops decoded at a DCT reduction: "
        f"{100 * reduced / (n * args.rounds):.0f}%"
    )
    print(f"{'pipeline (one process, 1 thread)':38s} {'best img/s':>10s} {'median':>8s}")
    for name, v in rates.items():
        print(f"{name:38s} {max(v):10.0f} {statistics.median(v):8.0f}")
    paired = {  # per-round ratios (the same round's passes), then their median
        "train view / before 16": ("robustkd train (uint8)", "robustkd before 16 train (float32)"),
        "train view / torchvision classic": ("robustkd train (uint8)", "torchvision classic train"),
        "eval view / before 16": ("robustkd eval (uint8)", "robustkd before 16 eval (float32)"),
        "eval view / torchvision classic": ("robustkd eval (uint8)", "torchvision classic eval"),
        "train view / floor": ("robustkd train (uint8)", "floor: read + full decode only"),
    }
    print("ratios, median over rounds of the round's ratio (min-max):")
    for what, (a, b) in paired.items():
        ratios = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
        print(
            f"  {what:34s} {statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
