"""Training-step time of PoseBH vs the multihead baseline on the same batch, in one run.

    python benchmarks/train_step.py --variant tiny --batch 16 --steps 20
    python benchmarks/train_step.py --variant base --batch 32 --device cuda --mixed-precision fp16

Both modes run the loop's step (`posebh_hf.training`: `compute_losses` -> `accelerator.backward` -> clip to 1.0
-> AdamW with layer-wise lr -> prototype write) on one process, with the same model weights, batch and
optimizer settings. PoseBH is timed in each stage (1: embedding head + prototypes; 2: + heads, cluster loss;
3: everything, cluster loss + CSS) and the multihead baseline (heads + backbone, no embedding head, no prototype
terms) with everything trainable. The goal is stage 3 <= 1.15 x the baseline. Steps alternate between the modes
so that machine-load drift affects both alike; the table reports the median and the spread of each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator

from posebh_hf.codecs import encode_heatmaps
from posebh_hf.configuration_posebh import PoseBHConfig, backbone_config_for
from posebh_hf.losses import cluster_keypoint_map
from posebh_hf.modeling import PoseBHForPoseEstimation
from posebh_hf.training import (
    LossConfig,
    LossContext,
    OptimizerConfig,
    PrototypeBankView,
    ScheduleConfig,
    StageFlags,
    StageSchedule,
    apply_stage,
    build_optimizer,
    compute_losses,
)
from posebh_hf.training.prototype_sync import build_cluster_bank


@dataclass
class Case:
    name: str
    flags: StageFlags
    use_prototypes: bool


def make_model(variant: str, image: tuple[int, int], seed: int) -> PoseBHForPoseEstimation:
    torch.manual_seed(seed)
    if variant == "tiny":
        config = PoseBHConfig.tiny(image_size=list(image), num_cluster_prototypes=96)
    else:
        config = PoseBHConfig(backbone_config=backbone_config_for(variant, num_experts=6, image_size=list(image)),
                              num_cluster_prototypes=96)
    return PoseBHForPoseEstimation(config)


def make_batch(model: PoseBHForPoseEstimation, batch: int, image: tuple[int, int], seed: int) -> dict:
    """A mixed batch of the six datasets with Gaussian targets at random visible keypoints."""
    rng = np.random.default_rng(seed)
    height, width = image
    k_max = max(model.config.num_keypoints)
    index = np.arange(batch) % model.config.num_datasets
    target = np.zeros((batch, k_max, height // 4, width // 4), np.float32)
    weight = np.zeros((batch, k_max), np.float32)
    for i, d in enumerate(index):
        k = model.config.num_keypoints[d]
        kpts = rng.uniform([8, 8], [width - 8, height - 8], size=(k, 2))
        vis = (rng.uniform(size=k) > 0.3).astype(np.float32)
        target[i, :k], weight[i, :k] = encode_heatmaps(kpts, vis, (width, height), (width // 4, height // 4))
    return {"pixel_values": torch.from_numpy(rng.normal(size=(batch, 3, height, width)).astype(np.float32)),
            "target": torch.from_numpy(target), "target_weight": torch.from_numpy(weight),
            "dataset_index": torch.from_numpy(index).long()}


def cases() -> list[Case]:
    paper = StageSchedule.from_config(ScheduleConfig(epochs=100))
    multi = StageSchedule.from_config(ScheduleConfig(epochs=100), "multihead")
    return [Case("multihead (all trainable)", multi.flags(0), False),
            Case("posebh stage 1 (emb + protos)", paper.flags(0), True),
            Case("posebh stage 2 (+heads, cps)", paper.flags(50), True),
            Case("posebh stage 3 (all, cps+css)", paper.flags(95), True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="tiny", choices=["tiny", "base", "huge"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image", type=int, nargs=2, default=[256, 192], metavar=("H", "W"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--grouped-experts", action="store_true", help="enable the selected-expert backbone")
    parser.add_argument("--clock", default="wall", choices=["wall", "process"],
                        help="wall time, or this process's CPU time (less sensitive to other load on a shared "
                             "CPU machine; use with --threads 1)")
    parser.add_argument("--profile", action="store_true",
                        help="after the timing, print torch.profiler's top operators for one step of the baseline "
                             "and of stage 3 (where PoseBH's extra time goes)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    image = (args.image[0], args.image[1])
    acc = Accelerator(cpu=args.device == "cpu", mixed_precision=args.mixed_precision)
    model = make_model(args.variant, image, seed=0)
    if args.grouped_experts:
        from posebh_hf.modeling.fast_backbone import enable_grouped_experts

        enable_grouped_experts(model)
    optimizer = build_optimizer(model, OptimizerConfig(), model.config.backbone_config.num_hidden_layers)
    model, optimizer = acc.prepare(model, optimizer)
    bank = PrototypeBankView(model.keypoint_prototypes)
    rows = sum(model.config.num_keypoints)
    clusters, closest = build_cluster_bank(bank.prototypes[:rows], 96, iters=50, beta=20.0, world_size=1,
                                           is_main=True)
    bank.write_clusters(clusters)
    batch = {k: v.to(acc.device) for k, v in make_batch(model, args.batch, image, seed=0).items()}
    contexts = {}
    for case in cases():
        ctx = LossContext(list(model.config.num_keypoints), LossConfig(), model.config.similarity,
                          use_prototypes=case.use_prototypes)
        ctx.keypoint_map = cluster_keypoint_map(closest, ctx.num_keypoints)
        contexts[case.name] = ctx
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}

    clock = time.process_time if args.clock == "process" else time.perf_counter

    def step(case: Case) -> float:
        apply_stage(model, case.flags)
        if acc.device.type == "cuda":
            torch.cuda.synchronize()
        tic = clock()
        result = compute_losses(model, bank if case.use_prototypes else None, batch, case.flags,
                                contexts[case.name])
        acc.backward(result.loss)
        acc.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if result.new_prototypes is not None:
            bank.write_rows(result.new_prototypes, rows)
        if acc.device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - tic

    times: dict[str, list[float]] = {c.name: [] for c in cases()}
    for i in range(args.warmup + args.steps):
        for case in cases():  # interleaved, so drift in machine load hits every case alike
            elapsed = step(case)
            if i >= args.warmup:
                times[case.name].append(elapsed)
        model.load_state_dict(snapshot)  # same weights for every round: no case profits from training
    base = statistics.median(times[cases()[0].name])
    print(f"device {acc.device} ({torch.get_num_threads()} threads), variant {args.variant}, batch {args.batch}, "
          f"image {image[0]}x{image[1]}, mixed precision {args.mixed_precision}, {args.steps} steps per case, "
          f"{args.clock} clock")
    print(f"{'case':32s} {'median ms':>10s} {'p10-p90 ms':>16s} {'x multihead':>12s}")
    for name, values in times.items():
        values = sorted(values)
        p10, p90 = values[len(values) // 10], values[min(len(values) - 1, (9 * len(values)) // 10)]
        median = statistics.median(values)
        print(f"{name:32s} {median * 1e3:10.1f} {p10 * 1e3:7.1f}-{p90 * 1e3:<8.1f} {median / base:12.2f}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for case in (cases()[0], cases()[-1]):
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                step(case)
            model.load_state_dict(snapshot)
            total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
            print(f"\n{case.name}: {total:.2f} s CPU self time; top operators by input shape:")
            print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=15,
                                                                     max_name_column_width=40,
                                                                     max_shapes_column_width=70))


if __name__ == "__main__":
    main()
