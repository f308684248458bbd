"""torch.compile under DistributedDataParallel: the training loop compiled on 2 gloo processes.

The loop wraps the task's loss in DDP and compiles the DDP module (DDP first, then compile, as
PyTorch's DDP notes ask, so that TorchDynamo's DDPOptimizer splits the graph at DDP's gradient
buckets; :func:`robustkd.engine.accel.compile_step`). On GPUs the loop compiles with
TorchInductor; on CPU it ignores the option, so here each rank lets it compile on CPU with the
``aot_eager`` backend: TorchDynamo's tracing, DDPOptimizer's graph split and AOTAutograd's
forward and backward graphs, run by eager kernels (TorchInductor's C++ code generation would add
about a minute per graph on 2 shared cores and tests nothing about DDP).

Both ranks run the same seed and data twice in one process group, eagerly and compiled (8 steps
of a tiny MLP, global batch 8, 4 a rank). What must hold: the two ranks end with bit-identical
weights (DDP averaged the gradients of the compiled backward), the compiled run ends within
float tolerance of the eager one (measured: equal; one graph), training moved the weights
(the comparison has teeth), TorchDynamo did compile graphs, and what was compiled is the DDP
module wrapping the task's model.
"""

import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from robustkd.engine.optim import TrainConfig
from tests import bounded

WORLD = 2
N, SIDE = 32, 8


class _Pixels(torch.utils.data.Dataset):
    """Seeded uint8 images (3, 8, 8) whose class is their brightest channel, by (epoch, i)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.arange(N) % 3
        self.images = torch.randint(0, 100, (N, 3, SIDE, SIDE), generator=g, dtype=torch.uint8)
        self.images[torch.arange(N), self.labels] += 120

    def __len__(self) -> int:
        return N

    def __getitem__(self, key):
        _, i = key
        return self.images[i], self.labels[i]


class _Task:
    """Cross-entropy of an MLP on slightly noised images (the noise drawn from the step's
    generator, as a distortion draws: a graph break TorchDynamo must run eagerly)."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 32), nn.GELU(), nn.Linear(32, 3)
        )

    def loss(self, images, labels, generator):
        noise = 0.01 * torch.randn(images.shape, generator=generator)
        ce = nn.functional.cross_entropy(self.model(images + noise), labels)
        return {"loss": ce, "ce": ce.detach()}


def _rank(rank, init_file, out):
    from robustkd.engine import accel, loop

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    compiled = []

    def compile_on_cpu(fn, device, enabled):
        result = accel.compile_step(fn, device, enabled, allow_cpu=True, backend="aot_eager")
        compiled.append((fn, result))
        return result

    loop.compile_step = compile_on_cpu  # the loop's own call, made to compile on this CPU
    try:
        weights = {}
        for name in ("eager", "compiled"):
            task = _Task()
            cfg = TrainConfig(
                epochs=2, batch_size=8, lr=1e-2, compile=name == "compiled", log_every=100
            )
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            loop.train(
                task,
                _Pixels(),
                cfg,
                seed=3,
                run_dir=out / f"{name}-{rank}",
                device=torch.device("cpu"),
            )
            weights[name] = {k: v.clone() for k, v in task.model.state_dict().items()}
            weights[f"{name}_graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        fn, result = compiled[-1]
        weights["wrapped"] = type(fn).__name__
        weights["wraps_model"] = getattr(getattr(fn, "module", None), "model", None) is task.model
        weights["compiled_is"] = type(getattr(result, "_orig_mod", None)).__name__
        torch.save(weights, out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_training_compiled_under_ddp_on_two_gloo_processes(tmp_path):
    t0 = time.monotonic()
    ranks = mp.start_processes(_rank, args=(tmp_path / "pg", tmp_path), nprocs=WORLD, join=False)
    deadline = t0 + bounded.QUICK
    while not ranks.join(timeout=1):  # raises if a rank failed
        if time.monotonic() > deadline:
            for p in ranks.processes:
                p.kill()
            pytest.fail(
                f"2 gloo processes compiled under DDP hung: running after {bounded.QUICK} s"
            )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD))

    # What the loop compiled: the DDP module around the task (DDP first, then compile).
    assert r0["wrapped"] == "DistributedDataParallel" and r0["wraps_model"]
    assert r0["compiled_is"] == "DistributedDataParallel"
    assert r0["compiled_graphs"] >= 1 and r0["eager_graphs"] == 0  # it did compile

    init = _Task().model.state_dict()
    moved = max((r0["eager"][k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-3  # training moved the weights: the comparisons below have teeth
    for k in init:
        assert torch.equal(r0["compiled"][k], r1["compiled"][k]), k  # DDP kept ranks in step
        assert torch.equal(r0["eager"][k], r1["eager"][k]), k
        torch.testing.assert_close(r0["compiled"][k], r0["eager"][k], rtol=0, atol=1e-6)
