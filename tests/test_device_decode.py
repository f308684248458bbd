"""The train view decoded on the device (engine/devicedecode.py) against the CPU path.

On the CPU both paths use libjpeg-turbo, so the crop geometry and, where the CPU path decodes
at full size, the pixels must be equal; where the CPU path decodes reduced in the DCT, they
differ as that reduction does (tests/test_decode.py's bound: a mean of at most 3 levels). On
CUDA (skipped elsewhere) nvJPEG and the float resize are compared with the CPU path.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from robustkd.engine.data import ImageSet, ViewConfig, _crop_box, make_loader, rng_for
from robustkd.engine.decode import ImageSource, dct_reduction
from robustkd.engine.devicedecode import (
    EncodedTrainSet,
    collate_encoded,
    decode_batch,
    device_decode,
)
from robustkd.engine.inputs import input_view
from tests.test_decode import array_set, jpeg_set, photos  # noqa: F401  (the prepared sets)

SIZE, SEED = 32, 4
VIEW = ViewConfig(size=SIZE, crop_scale=(0.08, 1.0))
CPU = torch.device("cpu")


def _batches(ds: ImageSet, epoch: int, device: torch.device = CPU):
    """The whole set at ``epoch`` by both paths: (CPU path uint8, device path uint8, items)."""
    keys = [(epoch, i) for i in range(len(ds))]
    cpu = torch.stack([ds[k][0] for k in keys])
    enc = EncodedTrainSet(ds)
    items = [enc[k] for k in keys]
    loader = DataLoader(enc, batch_sampler=[keys], collate_fn=collate_encoded)
    (batch,) = list(loader)
    assert torch.equal(batch.labels, torch.stack([ds[k][1] for k in keys]))
    return cpu, decode_batch(batch, SIZE, device), items


def test_device_path_has_the_cpu_paths_crops_and_pixels(jpeg_set):  # noqa: F811
    ds = ImageSet(jpeg_set, "train", VIEW, train=True, seed=SEED)
    full = reduced = 0
    for epoch in range(4):
        cpu, dev, items = _batches(ds, epoch)
        for i, (_, box, flip, encoded, _) in enumerate(items):
            src = ImageSource.from_file(jpeg_set.root / "images/train" / f"{i}.jpg")
            rng = rng_for(SEED, epoch, i)  # the CPU path's draws, made independently
            assert box == _crop_box(rng, src.height, src.width, VIEW.crop_scale, VIEW.crop_ratio)
            assert flip == (rng.random() < 0.5) and encoded
            if dct_reduction(box[2], box[3], SIZE, SIZE) == 1:
                full += 1
                assert torch.equal(dev[i], cpu[i]), (epoch, i)
            else:
                reduced += 1
                gap = (dev[i].float() - cpu[i].float()).abs().mean().item()
                assert gap <= 3.0, (epoch, i, gap)
    assert full >= 5 and reduced >= 1  # both branches of the CPU path were compared


def test_images_that_are_not_jpeg_files_travel_decoded(array_set):  # noqa: F811
    ds = ImageSet(array_set, "train", VIEW, train=True, seed=SEED)
    cpu, dev, items = _batches(ds, 1)
    assert not any(encoded for *_, encoded, _ in items)
    assert torch.equal(dev, cpu)
    ds.set_epoch(1)  # the loader's batches of epoch 1, as the CPU path yields them
    assert torch.equal(cpu, torch.cat([x for x, _ in make_loader(ds, [list(range(len(ds)))])]))


def test_device_decode_is_opt_in_and_for_cuda_training_only(jpeg_set):  # noqa: F811
    cuda = torch.device("cuda")
    default = ImageSet(jpeg_set, "train", VIEW, train=True)
    opted = ImageSet(jpeg_set, "train", ViewConfig(SIZE, decode="device"), train=True)
    assert not device_decode(default, cuda) and not device_decode(opted, CPU)
    assert device_decode(opted, cuda)
    assert not device_decode(ImageSet(jpeg_set, "train", opted.view, train=False), cuda)
    # The default view's repr and fingerprint are those from before the option existed.
    assert "decode" not in repr(VIEW)
    assert (
        default.fingerprint() != ImageSet(jpeg_set, "train", opted.view, train=True).fingerprint()
    )
    with pytest.raises(ValueError, match="train view only"):
        EncodedTrainSet(ImageSet(jpeg_set, "train", VIEW, train=False))
    backbone = {"timm_name": "resnet18", "weights": None}
    assert input_view({}, backbone)[0].decode == "cpu"
    assert input_view({"decode": "device"}, backbone)[0].decode == "device"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="decodes with nvJPEG on a CUDA device")
def test_cuda_decode_matches_the_cpu_decode(jpeg_set):  # noqa: F811
    """nvJPEG against libjpeg-turbo on the same JPEG bytes: full images within a mean of 1
    level (the IDCTs round differently); the device view (float resize rounded to uint8)
    within 2 levels of the CPU path where it decodes at full size, same crops and flips."""
    from torchvision.io import ImageReadMode, decode_jpeg

    cuda = torch.device("cuda")
    for i in range(len(jpeg_set.indices("train"))):
        data = ImageSource.from_file(jpeg_set.root / "images/train" / f"{i}.jpg").data
        buf = torch.frombuffer(data, dtype=torch.uint8)
        on_cpu = decode_jpeg(buf, mode=ImageReadMode.RGB)
        on_gpu = decode_jpeg([buf], mode=ImageReadMode.RGB, device=cuda)[0]
        assert on_gpu.device.type == "cuda" and on_gpu.shape == on_cpu.shape
        assert (on_gpu.cpu().float() - on_cpu.float()).abs().mean().item() <= 1.0, i
    ds = ImageSet(jpeg_set, "train", VIEW, train=True, seed=SEED)
    for epoch in range(3):
        cpu, dev, items = _batches(ds, epoch, cuda)
        assert dev.device.type == "cuda" and dev.dtype == torch.uint8
        for i, (_, box, *_rest) in enumerate(items):
            if dct_reduction(box[2], box[3], SIZE, SIZE) == 1:
                gap = (dev[i].cpu().float() - cpu[i].float()).abs().mean().item()
                assert gap <= 2.0, (epoch, i, gap)
