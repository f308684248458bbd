"""CIFAR-10 and CIFAR-100: the official python archives, read with torchvision's readers.

``prepare_*`` verifies ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` (or reuses an
already extracted ``cifar-10-batches-py`` / ``cifar-100-python`` folder), reads it with
``torchvision.datasets.CIFAR10`` / ``CIFAR100`` and writes the prepared dataset (splits
``train`` and ``test``, packed arrays; CIFAR-100 with its fine labels). ``write_demo_raw_*``
writes a miniature archive in the exact official format: Python-2-style pickles of uint8
(N, 3072) row-major CHW rows; CIFAR-10's train images are split over ``data_batch_1..5`` in
order, CIFAR-100 has files ``train``, ``test`` (fine and coarse labels) and ``meta``. Both are
methods of :class:`~robustkd.data.torchvision_archive.TorchvisionArchive`, shared with STL-10.
"""

from __future__ import annotations

import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustkd.data.torchvision_archive import RawFolder, Split, TorchvisionArchive

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CIFAR100_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR100_MD5",
    "CIFAR100_URL",
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "prepare_cifar10",
    "prepare_cifar100",
    "write_demo_raw_cifar10",
    "write_demo_raw_cifar100",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The 20 superclasses in coarse-label order, each with its 5 fine classes.
_CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE_CLASSES = tuple(_CIFAR100_SUPERCLASSES)
# Fine labels are numbered in alphabetical order of the names, as in the official meta.
CIFAR100_CLASSES = tuple(sorted(f for fs in _CIFAR100_SUPERCLASSES.values() for f in fs))
_FINE_TO_COARSE = {f: c for c, fs in enumerate(_CIFAR100_SUPERCLASSES.values()) for f in fs}


@dataclass(frozen=True)
class _Cifar(TorchvisionArchive):
    """The CIFAR python format: pickled batches, and a meta file naming the classes."""

    def open_split(self, reader: type, folder: str, split: str) -> Any:
        """Open ``split`` with ``CIFAR10`` / ``CIFAR100``."""
        return reader(folder, train=split == "train")

    def check_member(self, path: Path) -> None:
        """Raise unless ``path`` unpickles (as torchvision does) to a batch or meta dict."""
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        if not isinstance(entry, dict):
            raise ValueError(f"the pickle holds a {type(entry).__name__}, not a dict")
        if "data" in entry:
            np.asarray(entry["data"]).reshape(-1, 3072)
        elif not {"label_names", "fine_label_names"} & entry.keys():
            raise ValueError("the pickle holds neither images nor label names")

    def read_classes(self, train: Any, raw: RawFolder) -> list[str]:
        """The class names of the meta file."""
        return [str(c) for c in train.classes]

    def read_split(self, reader: type, ds: Any, split: str, raw: RawFolder) -> tuple[Split, str]:
        """The batches' images (already NHWC) and labels, and the batch files' names."""
        labels = np.asarray(ds.targets, dtype=np.int64)
        files = [f for f, _ in (reader.train_list if split == "train" else reader.test_list)]
        return (ds.data, labels), ", ".join(raw.shown(self.base_folder, f) for f in files)

    def members(self, seed: int, train: Split, test: Split) -> dict[str, bytes]:
        """The files of the official archive's folder."""
        names = [c.encode() for c in self.classes]
        if self.name == "cifar10":
            chunks = np.array_split(np.arange(len(train[1])), 5)
            members = {
                f"data_batch_{b}": _batch(
                    f"training batch {b} of 5", train[0][idx], train[1][idx], self.classes
                )
                for b, idx in enumerate(chunks, 1)
            }
            members["test_batch"] = _batch("testing batch 1 of 1", *test, self.classes)
            members["batches.meta"] = _py2_pickle(
                {b"num_cases_per_batch": len(chunks[0]), b"label_names": names, b"num_vis": 3072}
            )
            return members
        members = {
            "train": _batch("training batch 1 of 1", *train, self.classes),
            "test": _batch("testing batch 1 of 1", *test, self.classes),
        }
        members["meta"] = _py2_pickle(
            {
                b"fine_label_names": names,
                b"coarse_label_names": [c.encode() for c in CIFAR100_COARSE_CLASSES],
            }
        )
        return members


CIFAR10 = _Cifar(
    "cifar10",
    "CIFAR10",
    "cifar-10-python.tar.gz",
    CIFAR10_MD5,
    CIFAR10_URL,
    "cifar-10-batches-py",
    CIFAR10_CLASSES,
    32,
)
CIFAR100 = _Cifar(
    "cifar100",
    "CIFAR100",
    "cifar-100-python.tar.gz",
    CIFAR100_MD5,
    CIFAR100_URL,
    "cifar-100-python",
    CIFAR100_CLASSES,
    32,
)
prepare_cifar10 = CIFAR10.prepare
prepare_cifar100 = CIFAR100.prepare
write_demo_raw_cifar10 = CIFAR10.write_demo_raw
write_demo_raw_cifar100 = CIFAR100.write_demo_raw


def _py2_pickle(obj: Any) -> bytes:
    """Pickle with protocol 2 writing ``bytes`` as Python 2 ``str``, like the official files.

    Loaded with ``encoding="latin1"`` (torchvision) they become ``str`` keys and names; with
    ``encoding="bytes"`` (the dataset page's recipe) they stay ``bytes`` (``b"data"``).
    """

    class Pickler(pickle._Pickler):  # the pure-Python pickler lets us replace the bytes saver
        dispatch = pickle._Pickler.dispatch.copy()

        def save_py2_str(self, s: bytes) -> None:
            head = (
                pickle.SHORT_BINSTRING + bytes([len(s)])
                if len(s) < 256
                else pickle.BINSTRING + struct.pack("<i", len(s))
            )
            self.write(head + s)
            self.memoize(s)

        dispatch[bytes] = save_py2_str

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _batch(
    batch_label: str, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]
) -> bytes:
    """One official batch: uint8 (N, 3072) rows of the CHW images, labels as an int list.

    CIFAR-10 names the labels ``labels``; CIFAR-100 ``fine_labels`` plus ``coarse_labels``.
    """
    if len(classes) == 10:
        label_lists = {b"labels": labels.tolist()}
    else:
        coarse = np.array([_FINE_TO_COARSE[c] for c in classes])
        label_lists = {b"fine_labels": labels.tolist(), b"coarse_labels": coarse[labels].tolist()}
    return _py2_pickle(
        {
            b"batch_label": batch_label.encode(),
            **label_lists,
            b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1),
            b"filenames": [f"{classes[k]}_s_{i:06d}.png".encode() for i, k in enumerate(labels)],
        }
    )
