"""The train view decoded on the device: JPEG bytes to the GPU, the same seeded crops there.

For nodes whose CPUs cannot feed the GPU (``views.decode: device``). The loader's workers then
only read each file and its header and draw the view's crop box and flip from
``(seed, epoch, index)`` (:meth:`robustkd.engine.data.ImageSet.geometry`, the draws of the CPU
path); the batch's JPEGs are decoded together by ``torchvision.io.decode_jpeg(device=...)``
(nvJPEG on CUDA), and each box is cropped, resized (bilinear with antialiasing) and flipped on
the device. Images that are not RGB JPEG files (packed arrays, a preload cache, grey or CMYK
JPEGs, other formats) are cropped by the CPU path in the worker and travel decoded.

Pixels against the CPU path (:func:`robustkd.engine.decode.train_crop`): the same box and flip
always. On the CPU (the tests) the device path decodes and resizes as the CPU path does at no
DCT reduction, so where the CPU path decodes at full size the two are equal; where it decodes
reduced in the DCT (a crop at least twice the output side) they differ by a few levels, as
that reduction does from a full decode. On CUDA, nvJPEG's IDCT and the float resize (rounded
to uint8) differ from libjpeg-turbo and the uint8 resize by a few levels
(``tests/test_device_decode.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from robustkd.engine.data import ImageSet
from robustkd.engine.decode import _resize, train_crop

__all__ = ["EncodedBatch", "EncodedTrainSet", "collate_encoded", "decode_batch", "device_decode"]


class EncodedBatch(NamedTuple):
    """A batch of the device-decoded train view, as the loader yields it (host memory).

    Attributes:
        payloads: Per image, uint8: the JPEG file's bytes (N,) when ``encoded``, else the
            finished crop (3, S, S) of the CPU path.
        boxes: int64 (B, 4): ``(top, left, height, width)`` in full-resolution pixels.
        flips: bool (B,): flip horizontally after the crop.
        encoded: bool (B,): the payload is JPEG bytes, to decode on the device.
        labels: int64 (B,).
    """

    payloads: list[torch.Tensor]
    boxes: torch.Tensor
    flips: torch.Tensor
    encoded: torch.Tensor
    labels: torch.Tensor


class EncodedTrainSet(Dataset):
    """A train :class:`~robustkd.engine.data.ImageSet` whose JPEG files stay encoded.

    Indexed as the set is (``(epoch, index)`` keys); batch it with :func:`collate_encoded`.
    """

    def __init__(self, images: ImageSet) -> None:
        """Wrap ``images``.

        Raises:
            ValueError: ``images`` is not a train view (the eval view has no random crop).
        """
        if not images.train:
            raise ValueError("the device decode serves the train view only")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(
        self, key: tuple[int, int]
    ) -> tuple[torch.Tensor, tuple[int, int, int, int], bool, bool, torch.Tensor]:
        """Return ``(payload, box, flip, encoded, label)`` of ``(epoch, i)``.

        The fields are those of one image of :class:`EncodedBatch`.

        Raises:
            DataError: The image file cannot be read or its header parsed.
        """
        epoch, i = key
        src = self.images._source(i)
        box, flip = self.images.geometry(epoch, i, src.height, src.width)
        if src.fast and src.data is not None:
            return (
                torch.frombuffer(src.data, dtype=torch.uint8),
                box,
                flip,
                True,
                self.images.labels[i],
            )
        img = train_crop(src, box, self.images.view.size)
        return (img.flip(-1) if flip else img), box, flip, False, self.images.labels[i]


def collate_encoded(
    items: Sequence[tuple[torch.Tensor, tuple[int, int, int, int], bool, bool, torch.Tensor]],
) -> EncodedBatch:
    """Batch :class:`EncodedTrainSet` items (payloads stay a list: their sizes differ)."""
    return EncodedBatch(
        [p for p, *_ in items],
        torch.tensor([b for _, b, *_ in items], dtype=torch.int64).reshape(-1, 4),
        torch.tensor([f for _, _, f, _, _ in items], dtype=torch.bool),
        torch.tensor([e for *_, e, _ in items], dtype=torch.bool),
        torch.stack([y for *_, y in items]),
    )


def _crop_resize(img: torch.Tensor, box: Sequence[int], size: int) -> torch.Tensor:
    """Crop ``box`` of uint8 (3, H, W) and resize it to uint8 (3, size, size) where it lies.

    On the CPU: the CPU path's uint8 resize (channels-last, as decoded), hence its pixels. On
    other devices: bilinear with antialiasing in float32, rounded to uint8 (PyTorch's
    antialiased resize has no uint8 kernel there).
    """
    top, left, ch, cw = (int(v) for v in box)
    crop = img[None, :, top : top + ch, left : left + cw]
    if img.device.type == "cpu":
        return _resize(crop, (size, size))[0]
    if tuple(crop.shape[-2:]) == (size, size):
        return crop[0]
    out = F.interpolate(
        crop.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def decode_batch(batch: EncodedBatch, size: int, device: torch.device) -> torch.Tensor:
    """Decode, crop, resize and flip a batch on ``device``.

    Args:
        batch: From :func:`collate_encoded`.
        size: Side of the view in pixels.
        device: Where to decode (CUDA: nvJPEG, all the batch's JPEGs in one call).

    Returns:
        uint8 (B, 3, size, size) on ``device``, in the batch's order.

    Raises:
        RuntimeError: A JPEG cannot be decoded (torchvision's message).
    """
    out = torch.empty(len(batch.payloads), 3, size, size, dtype=torch.uint8, device=device)
    jpegs = [i for i, e in enumerate(batch.encoded.tolist()) if e]
    if jpegs:
        decoded = decode_jpeg(
            [batch.payloads[i] for i in jpegs], mode=ImageReadMode.RGB, device=device
        )
        flips = batch.flips.tolist()
        for i, img in zip(jpegs, decoded, strict=True):
            crop = _crop_resize(img, batch.boxes[i].tolist(), size)
            out[i] = crop.flip(-1) if flips[i] else crop
    for i in set(range(len(out))) - set(jpegs):
        out[i] = batch.payloads[i].to(device, non_blocking=True)
    return out


def device_decode(dataset: Dataset, device: torch.device) -> bool:
    """Whether training decodes ``dataset`` on ``device``: a train view asking for it, on CUDA.

    Elsewhere (the CPU; a set that is not an :class:`~robustkd.engine.data.ImageSet`) the
    loader workers decode, as by default.
    """
    view = getattr(dataset, "view", None)
    return (
        device.type == "cuda"
        and isinstance(dataset, ImageSet)
        and dataset.train
        and getattr(view, "decode", "cpu") == "device"
    )
