"""Multi-dataset mixing: one map-style dataset over several instance datasets, and an epoch batch sampler.

Proportional mode (the paper's setting, spec §5.4) shuffles all instances of all datasets together, so each instance
is seen once per epoch and datasets are mixed in proportion to their sizes. Ratio mode draws an epoch of
``num_samples`` with explicit per-dataset shares (each dataset cycles through its own permutations, so an instance
repeats only after all of its dataset's instances were drawn).

Sharding: every rank gets the same number of batches and no instance is duplicated or dropped: the epoch's order is
cut into ``world_size * ceil(N / (world_size * batch_size))`` nearly equal batches dealt round-robin to ranks (a few
batches are one sample shorter instead of padding with repeats). DataLoader workers take whole batches. Build the
DataLoader with ``batch_sampler=MixingBatchSampler(..., rank=accelerator.process_index,
world_size=accelerator.num_processes)`` and do not pass it through ``accelerator.prepare`` (which would shard again).

Workers are forked: call ``cv2.setNumThreads(0)`` in the main process before the first OpenCV call (as mmengine
does). Changing OpenCV's thread count inside a forked worker can deadlock on the thread pool inherited from a parent
that already used it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["MixedDataset", "MixedStream", "MixingBatchSampler", "even_batches", "mix_streams", "ratio_counts", "worker_init"]


class MixedDataset(Dataset):
    """Concatenation of map-style datasets (e.g. one :func:`views.instance_dataset` per corpus).

    Global index ``i`` maps to dataset ``d`` and local index ``i - offsets[d]``. ``__getitems__`` fetches each
    dataset's share of a batch in one call (so ``set_transform`` datasets process batches), keeping batch order.
    """

    def __init__(self, parts: Sequence[Any]) -> None:
        if not parts:
            raise ValueError("MixedDataset needs at least one dataset")
        self.parts = list(parts)
        self.sizes = [len(p) for p in self.parts]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(dataset, local index)`` of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a mixed dataset of {len(self)} samples")
        part = bisect.bisect_right(self.offsets, index) - 1
        return part, int(index - self.offsets[part])

    def __getitem__(self, index: int) -> Any:
        part, local = self.locate(int(index))
        return self.parts[part][local]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        located = [self.locate(int(i)) for i in indices]
        out: list[Any] = [None] * len(indices)
        for part in sorted({p for p, _ in located}):
            positions = [k for k, (p, _) in enumerate(located) if p == part]
            locals_ = [located[k][1] for k in positions]
            dataset = self.parts[part]
            items = dataset.__getitems__(locals_) if hasattr(dataset, "__getitems__") \
                else [dataset[j] for j in locals_]
            for k, item in zip(positions, items, strict=True):
                out[k] = item
        return out


def even_batches(order: np.ndarray, batch_size: int, rank: int, world_size: int) -> list[np.ndarray]:
    """This rank's batches of ``order``: every element exactly once overall, batches of at most ``batch_size``.

    All ranks get the same number of batches whenever ``batch_size >= 2`` and ``len(order) >= 2 * world_size``
    (with ``batch_size = 1`` and an odd split some ranks get one batch fewer, as no sample is repeated or dropped).
    """
    if batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
    per_rank = -(-len(order) // (world_size * batch_size))
    chunks = np.array_split(np.asarray(order, dtype=np.int64), per_rank * world_size) if per_rank else []
    return [c for c in chunks[rank::world_size] if len(c)]


def ratio_counts(ratios: Sequence[float], total: int) -> np.ndarray:
    """Integer per-dataset counts summing to ``total`` in proportion to ``ratios`` (largest remainders)."""
    r = np.asarray(ratios, dtype=np.float64)
    if r.ndim != 1 or np.any(r < 0) or not np.isfinite(r).all() or r.sum() <= 0:
        raise ValueError(f"ratios must be finite, >= 0 and not all 0, got {list(ratios)}")
    exact = r / r.sum() * total
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]] += 1
    return counts


class MixingBatchSampler(Sampler[list[int]]):
    """Batches of global indices into a :class:`MixedDataset` for one rank.

    Args:
        sizes: instances per dataset (``MixedDataset.sizes``).
        batch_size: samples per batch on this rank (some batches may be one shorter, see the module doc).
        ratios: per-dataset shares; ``None`` = proportional to size (every instance once per epoch).
        num_samples: epoch length in ratio mode (default: the total size).
        shuffle: shuffle the order (seeded by ``seed`` and the epoch).
        seed, rank, world_size: as in ``DistributedSampler``.
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, *, ratios: Sequence[float] | None = None,
                 num_samples: int | None = None, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.sizes = [int(s) for s in sizes]
        if not self.sizes or min(self.sizes) < 0:
            raise ValueError(f"sizes must be a non-empty list of counts, got {list(sizes)}")
        if ratios is not None and len(ratios) != len(self.sizes):
            raise ValueError(f"{len(ratios)} ratios for {len(self.sizes)} datasets")
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.batch_size, self.ratios, self.shuffle = int(batch_size), ratios, shuffle
        self.num_samples = int(num_samples) if num_samples is not None else int(self.offsets[-1])
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        even_batches(np.zeros(0), self.batch_size, self.rank, self.world_size)  # validates the arguments

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_order(self) -> np.ndarray:
        """All ranks' samples of this epoch (global indices), before the split into batches."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.ratios is None:
            total = int(self.offsets[-1])
            return rng.permutation(total) if self.shuffle else np.arange(total)
        counts = ratio_counts(self.ratios, self.num_samples)
        picks = []
        for d, count in enumerate(counts):
            if count and not self.sizes[d]:
                raise ValueError(f"dataset {d} is empty but its ratio asks for {count} samples")
            reps = -(-int(count) // self.sizes[d]) if count else 0
            local = np.concatenate([rng.permutation(self.sizes[d]) if self.shuffle else np.arange(self.sizes[d])
                                    for _ in range(reps)]) if reps else np.zeros(0, np.int64)
            picks.append(local[:count] + self.offsets[d])
        order = np.concatenate(picks).astype(np.int64)
        return rng.permutation(order) if self.shuffle else order

    def _batches(self) -> list[np.ndarray]:
        return even_batches(self.epoch_order(), self.batch_size, self.rank, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches():
            yield batch.tolist()

    def __len__(self) -> int:
        total = int(self.offsets[-1]) if self.ratios is None else self.num_samples
        return -(-total // (self.world_size * self.batch_size))


class MixedStream(torch.utils.data.IterableDataset):
    """Interleaved streaming instance datasets (e.g. :func:`views.stream_instances` per corpus).

    The next sample comes from stream ``d`` with probability proportional to ``weights[d]`` among the streams not
    yet exhausted. ``repeat=False`` (proportional mixing): a stream that ends drops out and the epoch ends with the
    last one, so each instance appears once. ``repeat=True`` (ratio mixing): an exhausted stream restarts until every
    stream has ended at least once. Inside DataLoader workers each stream splits its shards over the workers
    (``datasets``' rule), so workers never repeat each other's instances. Samples are passed through unchanged
    (numpy arrays; ``datasets.interleave_datasets`` would need arrow-typed features of one shape for all skeletons).
    """

    def __init__(self, streams: Sequence[Any], weights: Sequence[float], *, repeat: bool = False,
                 seed: int = 0) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if len(w) != len(streams) or not len(w) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(f"need one non-negative weight per stream, got {w.tolist()} for {len(streams)} streams")
        self.streams, self.weights, self.repeat, self.seed = list(streams), w, repeat, int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for stream in self.streams:
            if hasattr(stream, "set_epoch"):
                stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, self.epoch, worker.id if worker else 0])
        iterators = [iter(s) for s in self.streams]
        active = [d for d in range(len(self.streams)) if self.weights[d] > 0]
        ended: set[int] = set()
        while active and not (self.repeat and len(ended) == len(active)):
            p = self.weights[active] / self.weights[active].sum()
            d = active[int(rng.choice(len(active), p=p))]
            try:
                yield next(iterators[d])
            except StopIteration:
                if not self.repeat:
                    active.remove(d)
                    continue
                ended.add(d)
                iterators[d] = iter(self.streams[d])


def mix_streams(streams: Sequence[Any], *, sizes: Sequence[int] | None = None,
                ratios: Sequence[float] | None = None, seed: int = 0) -> MixedStream:
    """Mix streaming instance datasets proportionally to ``sizes`` (each instance once) or by ``ratios``."""
    if (sizes is None) == (ratios is None):
        raise ValueError("give exactly one of sizes (proportional mixing) or ratios")
    weights = sizes if sizes is not None else ratios
    return MixedStream(streams, list(weights), repeat=ratios is not None, seed=seed)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per worker (workers are the parallelism).

    OpenCV's thread count is deliberately not changed here: reconfiguring its pool in a forked worker deadlocks when
    the parent had used it. Set ``cv2.setNumThreads(0)`` in the main process instead (module docstring).
    """
    torch.set_num_threads(1)
