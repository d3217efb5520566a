"""Two gloo processes on CPU: the `all_reduce` hook makes 2 shards equal 1 process on the concatenation.

Covers `ops.sinkhorn_knopp` (the global equipartition) and `losses.prototype_loss` (Sinkhorn + momentum
statistics reduced: both ranks end with the single-process prototypes).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from posebh_hf.losses import ClusteringSettings, prototype_loss
from posebh_hf.ops import sinkhorn_knopp

NUM_KEYPOINTS = [3, 2]
WORLD = 2


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch, dim, h, w = 4, 8, 6, 5
    targets = torch.zeros(batch, 3, h, w)
    # sparse foreground: a few pixels per keypoint with values in (0, 1]
    for b in range(batch):
        for k in range(3):
            ys, xs = torch.randint(0, h, (4,), generator=g), torch.randint(0, w, (4,), generator=g)
            targets[b, k, ys, xs] = torch.rand(4, generator=g) + 0.05
    dataset_index = torch.tensor([0, 0, 1, 0])  # rank 0 holds no sample of dataset 1
    targets[dataset_index == 1, 2] = 0.0  # dataset 1 has 2 keypoints: padded channel empty
    return {
        "scores": torch.rand(50, 3, generator=g),
        "groups": torch.randint(0, 4, (50,), generator=g),
        "embeddings": torch.randn(batch, dim, h, w, generator=g),
        "targets": targets,
        "weights": torch.ones(batch, 3, 1),
        "dataset_index": dataset_index,
        "prototypes": torch.randn(5, 3, dim, generator=g),
    }


def _run(x: dict[str, torch.Tensor], rows: slice, pixels: slice, hook) -> dict[str, torch.Tensor]:
    q = sinkhorn_knopp(x["scores"][pixels], x["groups"][pixels], 4, all_reduce=hook)
    out = {}
    for assignment in ("argmax", "gumbel"):
        _, _, protos = prototype_loss(
            x["embeddings"][rows], x["targets"][rows], x["weights"][rows], x["dataset_index"][rows],
            x["prototypes"], NUM_KEYPOINTS, gamma=0.5, all_reduce=hook,
            clustering=ClusteringSettings(assignment=assignment),
            generator=torch.Generator().manual_seed(int(os.environ.get("RANK", "0"))))
        out[assignment] = protos
    out["q"] = q
    return out


def _worker(rank: int, store: str, out_dir: str) -> None:
    os.environ["RANK"] = str(rank)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)

    def hook(t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t)
        return t

    x = _inputs()
    out = _run(x, slice(2 * rank, 2 * rank + 2), slice(25 * rank, 25 * rank + 25), hook)
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # gloo may abort at interpreter exit (hf_notes §10)


def test_two_shards_equal_one_process(tmp_path):
    # fork: the children reuse the imported modules (spawn would re-import transformers, ~10 s per rank)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.start_processes(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD,
                             join=False, start_method=method)
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=5):  # re-raises a rank's exception
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.terminate()
            pytest.fail("the two gloo ranks did not finish within 180 s")
    x = _inputs()
    single = _run(x, slice(0, 4), slice(0, 50), None)
    shards = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    torch.testing.assert_close(torch.cat([s["q"] for s in shards]), single["q"], atol=1e-6, rtol=1e-5)
    for shard in shards:
        torch.testing.assert_close(shard["argmax"], single["argmax"], atol=1e-6, rtol=1e-5)
        # with Gumbel the samples differ per rank, but the reduced statistics make every rank agree
        torch.testing.assert_close(shard["gumbel"], shards[0]["gumbel"], atol=0, rtol=0)
    assert not torch.allclose(single["argmax"], torch.nn.functional.normalize(x["prototypes"], dim=-1))
