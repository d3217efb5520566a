"""Training-step cost of candidate pretraining models, heads on the whole batch vs only on their own samples.

    python benchmarks/head_routing.py                      # the candidates of docs/mdt_mini.md, 2 threads
    python benchmarks/head_routing.py --steps 6 --threads 2
    python benchmarks/head_routing.py --bf16                # the chosen model: fp32 vs bf16 autocast
    python benchmarks/head_routing.py --speedups            # the chosen model: eager vs channels-last, torch.compile,
                                                            # and the cost of a weight EMA

Each row is one model (input H x W, ViT width x depth, head type and channels) on a batch of 16 spread over five
datasets like the mdt_mini pretraining mix (8 lspe + 2 of each other), multi-head loss, backward and an AdamW step.
"all" runs every head on the whole batch (the released code); "own" runs each head on its own samples
(`route_heads=True` + `multi_head_loss(routed=True)`, what training does). Median CPU seconds of the process per step
after one warm-up step, and the ratio all / own, in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from posebh_hf.configuration_posebh import PoseBHConfig
from posebh_hf.losses import multi_head_loss
from posebh_hf.modeling import PoseBHForPoseEstimation

NAMES = ["coco", "aic", "mpii", "ap10k", "apt36k"]  # five built-in skeletons standing in for the five heads
CANDIDATES = [  # (H, W, hidden, layers, attention heads, head type, head channels)
    (256, 192, 192, 6, 3, "classic", 256),
    (256, 192, 192, 6, 3, "simple", 64),
    (192, 144, 192, 6, 3, "classic", 64),
    (192, 144, 192, 6, 3, "simple", 64),
    (128, 96, 192, 6, 3, "simple", 64),
]


def step_seconds(h: int, w: int, hidden: int, layers: int, heads: int, head_type: str, channels: int, routed: bool,
                 steps: int, bf16: bool = False, channels_last: bool = False, compile_model: bool = False,
                 ema: bool = False, warmup: int = 1) -> float:
    torch.manual_seed(0)
    config = PoseBHConfig.tiny(dataset_names=NAMES, image_size=[h, w], hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, part_features=hidden // 4, head_type=head_type,
                               head_channels=channels)
    model = PoseBHForPoseEstimation(config)
    model.embedding_head.requires_grad_(False)  # the multi-head baseline does not run it
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, 1e-3)
    averaged = [p.detach().clone() for p in params] if ema else []
    index = torch.tensor([0] * 8 + [1, 1, 2, 2, 3, 3, 4, 4])
    pixels = torch.randn(len(index), 3, h, w)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile_model else model
    targets = torch.rand(len(index), max(config.num_keypoints), h // 4, w // 4)
    weights = torch.ones(len(index), max(config.num_keypoints), 1)
    times = []
    for _ in range(steps + warmup):
        start = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # what mixed_precision: bf16 does on CPU
            out = forward(pixels, dataset_index=index, heads="all", route_heads=routed)
            loss, _ = multi_head_loss([h.float() for h in out.heatmaps.values()], targets, weights, index,
                                      routed=routed)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if ema:
            with torch.no_grad():
                torch._foreach_lerp_(averaged, [p.detach() for p in params], 1 - 0.999)
        times.append(time.process_time() - start)
    return statistics.median(times[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true",
                        help="instead: the chosen model (192 x 144, simple heads, routed) in fp32 vs bf16 autocast")
    parser.add_argument("--speedups", action="store_true",
                        help="instead: the chosen model, eager fp32 vs channels-last, torch.compile and an EMA")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.speedups:
        chosen = (192, 144, 192, 6, 3, "simple", 64)
        variants = {"eager fp32 (training today)": {}, "channels-last": {"channels_last": True},
                    "torch.compile (inductor)": {"compile_model": True, "warmup": 3},
                    "eager + weight EMA (0.999)": {"ema": True}}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for order in (list(variants), list(reversed(variants))):  # both orders, so load drift hits all alike
            for name in order:
                times[name].append(step_seconds(*chosen, True, args.steps, **variants[name]))
        base = statistics.median(times["eager fp32 (training today)"])
        print(f"torch {torch.__version__}, {args.threads} threads, 192 x 144 simple heads routed, batch 16, CPU s/step "
              f"(median of {args.steps} steps after warm-up, two passes in opposite orders)")
        print("| variant | CPU s / step | speed vs eager |")
        print("|---|---|---|")
        for name, values in times.items():
            value = statistics.median(values)
            print(f"| {name} | {value:.2f} | {base / value:.2f}x |", flush=True)
        return
    if args.bf16:
        chosen = (192, 144, 192, 6, 3, "simple", 64)
        times = {"fp32": [], "bf16 autocast": []}
        for _ in range(3):  # alternate, so machine-load drift hits both alike
            times["fp32"].append(step_seconds(*chosen, True, args.steps))
            times["bf16 autocast"].append(step_seconds(*chosen, True, args.steps, bf16=True))
        fp32 = statistics.median(times["fp32"])
        print(f"torch {torch.__version__}, {args.threads} threads, 192 x 144 simple heads routed, batch 16, CPU s/step")
        for name, values in times.items():
            value = statistics.median(values)
            print(f"| {name} | {value:.2f} | {fp32 / value:.2f}x |")
        return
    print(f"torch {torch.__version__}, {args.threads} threads, batch 16, CPU seconds per step (median of {args.steps})")
    print("| input H x W | ViT width x depth | heads | all heads on all samples | own samples only | ratio |")
    print("|---|---|---|---|---|---|")
    for h, w, hidden, layers, heads, head_type, channels in CANDIDATES:
        full = step_seconds(h, w, hidden, layers, heads, head_type, channels, False, args.steps)
        own = step_seconds(h, w, hidden, layers, heads, head_type, channels, True, args.steps)
        print(f"| {h} x {w} | {hidden} x {layers} | {head_type} {channels} | {full:.2f} | {own:.2f} | "
              f"{full / own:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
