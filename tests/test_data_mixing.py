"""Mixing, sharding and collation: no instance duplicated or lost across ranks x DataLoader workers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from conftest import shared_path
from datasets.distributed import split_dataset_by_node  # noqa: F401  (the rule stream_instances relies on)
from torch.utils.data import DataLoader

from posebh_hf.data import (
    ConvertOptions,
    MixedDataset,
    MixingBatchSampler,
    PoseCollator,
    PoseTrainTransform,
    build_dataset,
    even_batches,
    indices_by_dataset,
    instance_dataset,
    load_pose_dataset,
    mix_streams,
    stream_instances,
    worker_init,
)
from posebh_hf.data.mixing import ratio_counts

WORLD, WORKERS = 2, 2


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Two skeletons: dlc_openfield (K=4, 71 instances) and mirror_mouse (K=17, 56), mdt_mini crops."""
    root = tmp_path_factory.mktemp("mix")
    out = []
    for index, name in enumerate(("dlc_openfield", "mirror_mouse")):
        folder = shared_path("mdt_mini", "crops", name)
        build_dataset("coco-custom", folder / f"{name}_train.json", folder, root / name, progress=False,
                      options=ConvertOptions(skeleton_name=name))
        ds, _ = load_pose_dataset(root / name)
        out.append((ds, PoseTrainTransform.from_dataset(ds, dataset_index=index, seed=1, box_source="content")))
    return out


@pytest.mark.parametrize("n", [0, 1, 5, 63, 64, 65, 127])
@pytest.mark.parametrize(("batch", "world"), [(8, 1), (8, 2), (5, 3), (1, 2)])
def test_even_batches_partition(n: int, batch: int, world: int) -> None:
    order = np.random.default_rng(n).permutation(n)
    per_rank = [even_batches(order, batch, r, world) for r in range(world)]
    flat = np.concatenate([np.concatenate(b) if b else np.zeros(0, np.int64) for b in per_rank])
    assert sorted(flat.tolist()) == list(range(n))  # every sample exactly once
    if n >= 2 * world and batch >= 2:  # the documented condition for equal step counts
        assert len({len(b) for b in per_rank}) == 1  # same number of steps on every rank
    assert all(0 < len(x) <= batch for b in per_rank for x in b)


def test_sampler_modes() -> None:
    sizes = [10, 3, 7]
    ranks = [MixingBatchSampler(sizes, 4, seed=5, rank=r, world_size=2) for r in range(2)]
    seen = [i for s in ranks for b in s for i in b]
    assert sorted(seen) == list(range(20)) and len(ranks[0]) == len(list(ranks[0])) == 3
    first = list(ranks[0])
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != first
    ratio = MixingBatchSampler(sizes, 8, ratios=[1, 1, 2], num_samples=40, seed=0)
    order = ratio.epoch_order()
    counts = Counter(int(np.searchsorted(ratio.offsets, i, side="right") - 1) for i in order)
    assert [counts[d] for d in range(3)] == ratio_counts([1, 1, 2], 40).tolist() == [10, 10, 20]
    small = Counter(i for i in order if 10 <= i < 13)  # dataset 1 (3 instances) drawn 10 times: 4, 3, 3
    assert sorted(small.values()) == [3, 3, 4]


def test_two_ranks_two_workers_map_style(corpora: list) -> None:
    parts = [instance_dataset(ds, tr) for ds, tr in corpora]
    mixed = MixedDataset(parts)
    expected = {(d, int(ds[int(r)]["image_id"]), int(o))
                for d, (ds, view) in enumerate(zip([c[0] for c in corpora], parts, strict=True))
                for r, o in zip(view.data.column("row").to_pylist(), view.data.column("object").to_pylist(),
                                strict=True)}
    assert len(expected) == len(mixed) == 71 + 56
    collate = PoseCollator(max_num_keypoints=133)
    got: list[tuple[int, int, int]] = []
    steps = []
    for rank in range(WORLD):
        sampler = MixingBatchSampler(mixed.sizes, 16, seed=3, rank=rank, world_size=WORLD)
        loader = DataLoader(mixed, batch_sampler=sampler, num_workers=WORKERS, collate_fn=collate,
                            worker_init_fn=worker_init)
        steps.append(0)
        for batch in loader:
            steps[-1] += 1
            assert batch["target"].shape[1:] == (133, 64, 48) and batch["pixel_values"].shape[1:] == (3, 256, 192)
            k = torch.where(batch["dataset_index"] == 0, 4, 17)
            assert torch.equal(batch["num_keypoints"], k)
            pad = torch.arange(133)[None, :] >= k[:, None]
            assert float(batch["target_weight"][pad].abs().sum()) == 0.0
            assert float(batch["target"][pad].abs().sum()) == 0.0
            got += list(zip(batch["dataset_index"].tolist(), batch["image_id"].tolist(), batch["object_index"].tolist(),
                            strict=True))
    assert steps[0] == steps[1] == len(sampler)
    assert len(got) == len(set(got)) and set(got) == expected  # nothing duplicated, nothing lost
    assert len({b for b in (0, 1) if any(g[0] == b for g in got)}) == 2


@pytest.mark.parametrize("num_shards", [4, 3])
def test_two_ranks_two_workers_streaming(corpora: list, num_shards: int) -> None:
    ds, transform = corpora[1]  # mirror_mouse, 56 instances (one per image)
    got = []
    for rank in range(WORLD):
        stream = stream_instances(ds.to_iterable_dataset(num_shards=num_shards), transform, rank=rank,
                                  world_size=WORLD)
        loader = DataLoader(stream.with_format("torch"), batch_size=8, num_workers=WORKERS,
                            collate_fn=PoseCollator())
        for batch in loader:
            got += list(zip(batch["image_id"].tolist(), batch["object_index"].tolist(), strict=True))
    expected = {(int(i), 0) for i in ds["image_id"]}
    assert len(got) == len(set(got)) == 56 and set(got) == expected


def test_mix_streams_proportional_sees_each_instance_once(corpora: list) -> None:
    streams = [stream_instances(ds.to_iterable_dataset(num_shards=1), tr) for ds, tr in corpora]
    mixed = list(mix_streams(streams, sizes=[71, 56], seed=0))
    keys = [(s["dataset_index"], s["image_id"]) for s in mixed]
    assert len(keys) == len(set(keys)) == 127
    first_half = [k[0] for k in keys[:60]]
    assert 0 < sum(first_half) < 60  # interleaved, not one dataset after the other
    with pytest.raises(ValueError, match="exactly one"):
        mix_streams(streams)
    # through 2 DataLoader workers (each stream's 2 shards split over them): still each instance once
    sharded = [stream_instances(ds.to_iterable_dataset(num_shards=2), tr) for ds, tr in corpora]
    loader = DataLoader(mix_streams(sharded, sizes=[71, 56], seed=1), batch_size=8, num_workers=WORKERS,
                        collate_fn=PoseCollator())
    keys = [k for b in loader for k in zip(b["dataset_index"].tolist(), b["image_id"].tolist(), strict=True)]
    assert len(keys) == len(set(keys)) == 127
    # ratio mode restarts the smaller stream until both ended once
    repeated = [s["dataset_index"] for s in mix_streams(streams, ratios=[1, 3], seed=0)]
    assert repeated.count(1) >= 56 and repeated.count(0) >= 71 and len(repeated) > 127


def test_collate_pads_to_batch_max_and_groups() -> None:
    def sample(k: int, d: int) -> dict:
        return {"pixel_values": np.zeros((3, 8, 6), np.float32), "target": np.ones((k, 4, 3), np.float32),
                "target_weight": np.ones(k, np.float32), "keypoints": np.ones((k, 3), np.float32),
                "dataset_index": d, "image_id": 7, "object_index": 0}

    batch = PoseCollator()([sample(4, 2), sample(17, 0), sample(4, 2)])
    assert batch["target"].shape == (3, 17, 4, 3) and batch["num_keypoints"].tolist() == [4, 17, 4]
    assert batch["target_weight"][0, 4:].sum() == 0 and batch["target_weight"][1].sum() == 17
    groups = indices_by_dataset(batch["dataset_index"])
    assert list(groups) == [0, 2] and groups[2].tolist() == [0, 2]
    with pytest.raises(ValueError, match="max_num_keypoints"):
        PoseCollator(max_num_keypoints=10)([sample(17, 0)])
