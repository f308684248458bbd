"""Provenance records name the hardware that computed a result, as well as code and software."""

import json
import sys

import torch

from robustkd.provenance import hardware, write_provenance


def test_record_names_cpu_kernels_threads_and_gpus(tmp_path):
    out = tmp_path / "model.pth"
    out.write_bytes(b"weights")
    record = write_provenance(tmp_path / "provenance.json", rule="r", outputs=[out], seed=3)
    on_disk = json.loads((tmp_path / "provenance.json").read_text())
    assert on_disk["hardware"] == record["hardware"]
    hw = on_disk["hardware"]
    assert hw["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert hw["torch_threads"] == torch.get_num_threads()
    assert isinstance(hw["cpu"], str) and hw["cpu"]
    assert hw["cuda_devices"] == (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else None
    )


def test_thread_count_is_read_when_the_record_is_written():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert hardware()["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_a_job_without_torch_has_no_torch_fields(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")  # as in a job that never imported torch
    hw = hardware()
    assert "torch" not in sys.modules  # and recording the hardware did not import it
    assert hw["torch_cpu_capability"] is None and hw["torch_threads"] is None
    assert hw["cuda_devices"] is None and hw["cpu"]
