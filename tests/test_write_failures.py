"""A write that fails names the file and the cause, and leaves nothing half-written (issue 26).

A full disk is simulated two ways: a real 64 KiB tmpfs (needs root to mount; skipped
otherwise) and writers monkeypatched to fail as a full disk makes them fail: an ``OSError``
(ENOSPC) after some bytes, or torch's own writer error, which hides the ``OSError``
(``[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534``).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustkd.errors import DataError, RobustKDError

FULL = r"no space left on device \([\d,]+ bytes free on /"
TORCH_ERROR = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs folder (root only)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    cmd = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]
    if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    # Lazily: a file a failed write left open (in a kept traceback) must not keep it mounted.
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_checkpoint_on_a_full_disk_names_the_file_the_cause_and_the_free_space(small_disk):
    from robustkd.engine.checkpoint import save_checkpoint

    ckpt = small_disk / "run" / "checkpoint.pt"
    with pytest.raises(RobustKDError, match=FULL) as info:
        save_checkpoint(ckpt, model=nn.Linear(200, 200), state={"step": 1})
    msg = str(info.value)
    assert msg.startswith(f"{ckpt}: cannot write it") and str(small_disk) in msg
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert _everything_under(small_disk) == []  # the temporary file is gone


@pytest.mark.parametrize("kind", ["bytes", "npy", "json", "weights"])
def test_every_atomic_writer_on_a_full_disk(small_disk, kind):
    from robustkd.atomic import atomic_write_bytes, save_npy_atomic, write_json_atomic
    from robustkd.engine.checkpoint import save_weights

    out = small_disk / f"out.{kind}"
    write = {
        "bytes": lambda: atomic_write_bytes(out, b"x" * 200_000),
        "npy": lambda: save_npy_atomic(out, np.zeros(30_000)),
        "json": lambda: write_json_atomic(out, {"values": list(range(40_000))}),
        "weights": lambda: save_weights(out, nn.Linear(200, 200)),
    }[kind]
    with pytest.raises(RobustKDError, match=FULL) as info:
        write()
    assert str(info.value).startswith(f"{out}: cannot write it")
    assert _everything_under(small_disk) == []


def test_prepared_dataset_and_archive_on_a_full_disk(small_disk, tmp_path):
    from robustkd.data import PreparedWriter
    from robustkd.data.archives import extract_archive

    out = small_disk / "data" / "cifar10"
    with pytest.raises(RobustKDError, match=FULL) as info:
        with PreparedWriter(out, ["a", "b"], provenance={"rule": "test"}) as w:
            w.add_array("train", np.zeros((40, 32, 32, 3), np.uint8), [0, 1] * 20)
    assert str(info.value).startswith(f"{out}: cannot write it")
    free = int(re.search(r"([\d,]+) bytes free", str(info.value))[1].replace(",", ""))
    assert free < 8192  # counted when the write failed, not after the folder was removed
    assert _everything_under(small_disk) == []

    big = tmp_path / "payload.bin"
    big.write_bytes(os.urandom(200_000))
    archive = tmp_path / "release.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(big, arcname="release/payload.bin")
    with pytest.raises(DataError, match=f"{archive}: cannot extract it: .*{FULL}"):
        extract_archive(archive, small_disk / "release")
    assert _everything_under(small_disk) == []


def test_the_full_disk_lands_in_the_jobs_log(small_disk, tmp_path):
    log = tmp_path / "logs" / "distill.log"
    ckpt = small_disk / "checkpoint.pt"
    script = (
        "import torch\n"
        "from robustkd.joblog import configure_job_logging\n"
        "from robustkd.engine.checkpoint import save_checkpoint\n"
        f"configure_job_logging({str(log)!r})\n"
        f"save_checkpoint({str(ckpt)!r}, model=torch.nn.Linear(200, 200), state={{}})\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode != 0
    text = log.read_text()
    assert "job failed: OutputError" in text and f"{ckpt}: cannot write it" in text, text
    assert "no space left on device" in text.splitlines()[0] or "no space left" in text


def test_torchs_hidden_write_error_is_translated(tmp_path, monkeypatch):
    """torch.save given a path hides the OSError; the message still names file and cause."""
    from robustkd.engine import checkpoint

    def failing_save(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a zip")
        raise RuntimeError(TORCH_ERROR)

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    monkeypatch.setattr("robustkd.atomic._LOW_SPACE", 2**62, raising=False)  # a full disk
    ckpt = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(RobustKDError, match=f"torch could not write it.*{FULL}") as info:
        checkpoint.save_checkpoint(ckpt, model=nn.Linear(2, 2), state={})
    assert str(info.value).startswith(f"{ckpt}: cannot write it")
    assert "unexpected pos" in str(info.value)
    assert _everything_under(tmp_path) == []


def test_enospc_in_the_middle_of_a_write_is_named(tmp_path, monkeypatch):
    """Without a small disk: np.save fails as a full disk makes it fail, after some bytes."""
    from robustkd import atomic

    def failing_save(fh, array):
        fh.write(b"\x93NUMPY half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", failing_save)  # what atomic calls (it imports numpy lazily)
    out = tmp_path / "sets" / "mask-0.90.npy"
    with pytest.raises(RobustKDError, match=FULL) as info:
        atomic.save_npy_atomic(out, np.zeros(3))
    assert str(info.value).startswith(f"{out}: cannot write it")
    assert "after writing 11 bytes of it" in str(info.value)
    assert _everything_under(tmp_path) == []


def test_a_checkpoint_written_through_a_file_object_still_loads(tmp_path):
    from robustkd.engine.checkpoint import load_checkpoint, save_checkpoint

    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "c.pt", model=model, state={"step": 4})
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt["step"] == 4
    assert all(torch.equal(ckpt["model"][k], v) for k, v in model.state_dict().items())
    assert _everything_under(tmp_path) == ["c.pt"]


def test_the_step_log_on_a_full_disk_names_its_file(tmp_path):
    from robustkd.engine.steplog import StepLog

    class FullDisk:
        name = str(tmp_path / "run" / "log.jsonl")

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    log = StepLog(FullDisk())
    log.add(0, 0, 0.1, {"loss": torch.tensor(1.0)})
    with pytest.raises(RobustKDError, match=f"log.jsonl: cannot write it: {FULL}"):
        log.flush()
