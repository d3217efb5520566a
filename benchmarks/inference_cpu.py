"""P1: PoseBH inference paths vs transformers' `VitPoseForPoseEstimation`, same random ViTPose++-B weights.

Builds (once, cached in --cache-dir) a transformers ViTPose++-B folder with random weights (6 experts,
part_features 192, classic decoder, 17 keypoints), converts it once with `posebh convert vitpose`'s code, and
times, at each batch size, on the same random input with dataset_index 0 (COCO) for every sample:

  transformers      VitPoseForPoseEstimation (every expert on every token, masked; SDPA attention)
  posebh-masked     PoseBHForPoseEstimation, COCO head only, transformers' masked MoE (the reference path)
  posebh-grouped    the same model after `enable_grouped_experts` (only the selected expert is computed)
  posebh-merged     `single_dataset_model(model, "coco")`: expert merged into fc2 (what `posebh export onnx` exports)
  --extras adds     posebh-grouped-eager (eager attention instead of SDPA), posebh-merged-cl (channels-last head),
                    posebh-merged-compile (torch.compile; compile time reported separately), onnxruntime (--onnx)

Candidates are interleaved (rotated order in each round); the table reports the median img/s, its ratio to
transformers' median, and the range of the per-round ratios (each round runs every candidate once, so the range
shows how much the machine's load moved during the run). Heatmaps
of every path are compared with transformers' on the timed input (max |diff|). GFLOPs/img are counted with
`torch.utils.flop_counter` (matmuls and convolutions). On CUDA, achieved TFLOP/s are also given as a fraction of the
measured dense matmul peak of the same dtype (an 8192^3 product, median of 10).

    python benchmarks/inference_cpu.py                                  # fp32 CPU, batch 1 8 32, 2 threads
    python benchmarks/inference_cpu.py --batch-sizes 8 --extras         # the optional switches, at batch 8
    python benchmarks/inference_cpu.py --device cuda --dtype bf16 --batch-sizes 64 256

OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE, unless already set): on a shared, oversubscribed machine
the default spinning made 2-thread ViT-B inference 7x slower than 1 thread (0.07 vs 0.47 img/s at load 12 on 2
cores); with passive waiting 2 threads match or beat 1. It applies to every candidate alike.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the first torch import (see the docstring)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from machine_info import cpu_name  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation  # noqa: E402

from posebh_hf.conversion import convert_vitpose  # noqa: E402
from posebh_hf.export import single_dataset_model  # noqa: E402
from posebh_hf.modeling import PoseBHForPoseEstimation  # noqa: E402
from posebh_hf.modeling.fast_backbone import (  # noqa: E402
    attention_implementation,
    heads_to_channels_last,
    set_attention_implementation,
    set_expert_dispatch,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
Runner = Callable[[torch.Tensor], torch.Tensor]


def build_weights(cache_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Random ViTPose++-B transformers folder + its PoseBH conversion, created once under `cache_dir`."""
    vitpose_dir, posebh_dir = cache_dir / "vitpose-plus-base-random", cache_dir / "posebh-plus-base-random"
    if not (vitpose_dir / "config.json").is_file():
        torch.manual_seed(seed)
        backbone = VitPoseBackboneConfig(image_size=[256, 192], patch_size=[16, 16], hidden_size=768,
                                         num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4, num_experts=6,
                                         part_features=192, qkv_bias=True, layer_norm_eps=1e-6, out_indices=[12])
        config = VitPoseConfig(backbone_config=backbone, use_simple_decoder=False, num_labels=17)
        VitPoseForPoseEstimation(config).save_pretrained(vitpose_dir)
    if not (posebh_dir / "config.json").is_file():
        convert_vitpose(vitpose_dir, posebh_dir, seed=seed)
    return vitpose_dir, posebh_dir


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Runner, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    _sync(x.device)
    start = time.perf_counter()
    out = fn(x)
    _sync(x.device)
    return time.perf_counter() - start, out


def count_gflops(fn: Runner, x: torch.Tensor) -> float:
    """GFLOPs per image of one forward (matmuls + convolutions), counted on `x` (batch 1)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn(x)
    return counter.get_total_flops() / 1e9 / x.shape[0]


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    """Measured dense matmul rate (median of `repeats` n^3 products, after warm-up), TFLOP/s."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = [time_call(lambda _: a @ b, a)[0] for _ in range(repeats)]
    return 2 * n**3 / statistics.median(times) / 1e12


def build_candidates(args: argparse.Namespace, device: torch.device, dtype: torch.dtype
                     ) -> tuple[dict[str, Runner], dict[str, float]]:
    """name -> runner (pixel_values -> COCO heatmaps [B, 17, 64, 48]), and one-off setup times (compile)."""
    vitpose_dir, posebh_dir = build_weights(args.cache_dir)
    reference = VitPoseForPoseEstimation.from_pretrained(vitpose_dir).to(device, dtype).eval()
    posebh = PoseBHForPoseEstimation.from_pretrained(posebh_dir).to(device, dtype).eval()
    # A second instance for grouped dispatch: switching one model back and forth would rebuild the grouped modules
    # (and their merged-weight cache) on every call.
    grouped = PoseBHForPoseEstimation.from_pretrained(posebh_dir).to(device, dtype).eval()
    set_expert_dispatch(grouped, "grouped")
    merged = single_dataset_model(posebh, "coco")
    print(f"attention: transformers backbone {attention_implementation(reference)}, "
          f"PoseBH backbone {attention_implementation(posebh)}")

    def index(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)

    def posebh_path(model: PoseBHForPoseEstimation, attention: str = "sdpa") -> Runner:
        def run(x: torch.Tensor) -> torch.Tensor:
            set_attention_implementation(model, attention)  # a config field: switching costs nothing
            return model(x, dataset_index=index(x), heads=["coco"]).heatmaps["coco"]
        return run

    candidates: dict[str, Runner] = {
        "transformers": lambda x: reference(x, dataset_index=index(x)).heatmaps,
        "posebh-masked": posebh_path(posebh),
        "posebh-grouped": posebh_path(grouped),
        "posebh-merged": merged,
    }
    setup: dict[str, float] = {}
    if args.extras:
        candidates["posebh-grouped-eager"] = posebh_path(grouped, "eager")
        merged_cl = single_dataset_model(posebh, "coco")
        heads_to_channels_last(merged_cl.head)
        candidates["posebh-merged-cl"] = merged_cl
    if args.compile:
        compiled = torch.compile(single_dataset_model(posebh, "coco"), dynamic=False)
        candidates["posebh-merged-compile"] = compiled
    if args.onnx:
        candidates["onnxruntime"] = _onnx_runner(posebh, args, setup)
    return candidates, setup


def _onnx_runner(posebh: PoseBHForPoseEstimation, args: argparse.Namespace, setup: dict[str, float]) -> Runner:
    import onnxruntime as ort

    from posebh_hf.export import export_onnx

    path = args.cache_dir / "posebh-plus-base-random-coco.onnx"
    if not path.is_file():
        start = time.perf_counter()
        export_onnx(posebh.float().cpu(), "coco", path, check=False)
        setup["onnx export (s)"] = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(["heatmaps"], {"pixel_values": x.float().cpu().numpy()})[0])


def benchmark(args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    candidates, setup = build_candidates(args, device, dtype)
    names = list(candidates)
    height, width = 256, 192
    results: dict = {"rows": [], "setup": setup}
    gflops = {}
    with torch.inference_mode():
        one = torch.randn(1, 3, height, width, device=device, dtype=dtype)
        for name in names:
            if "compile" in name or name == "onnxruntime":
                continue
            gflops[name] = count_gflops(candidates[name], one)
        for name in names:
            if "compile" in name:
                gflops[name] = gflops["posebh-merged"]
            if name == "onnxruntime":
                gflops[name] = gflops["posebh-merged"]
        for n, batch in enumerate(args.batch_sizes):
            generator = torch.Generator().manual_seed(batch)
            x = torch.randn(batch, 3, height, width, generator=generator).to(device, dtype)
            if n == 0:  # warm-up (allocator, oneDNN primitives, compilation) once, at the first batch size
                for name in names:
                    elapsed = time_call(candidates[name], x)[0]
                    if "compile" in name:
                        setup[f"{name} first call (s)"] = elapsed
            outputs, times = {}, {name: [] for name in names}
            rounds = args.repeats * (3 if batch == 1 else 1)
            for r in range(rounds):
                for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order every round
                    elapsed, out = time_call(candidates[name], x)
                    times[name].append(elapsed)
                    outputs.setdefault(name, out)  # the first round's heatmaps are compared below
            reference = outputs["transformers"].float()
            scale = float(reference.abs().max())
            reference_median = statistics.median(times["transformers"])
            for name in names:
                ratios = [t_ref / t for t_ref, t in zip(times["transformers"], times[name], strict=True)]
                median = statistics.median(times[name])
                diff = float((outputs[name].float().to(reference.device) - reference).abs().max())
                results["rows"].append({
                    "batch": batch, "path": name, "img_s": batch / median, "median_s": median,
                    "speedup": reference_median / median, "paired_ratios": (min(ratios), max(ratios)),
                    "times_s": times[name],
                    "max_abs_diff": diff, "max_abs_ref": scale, "gflops_per_img": gflops[name], "rounds": rounds,
                })
            print(f"batch {batch} done ({rounds} rounds, load average {os.getloadavg()[0]:.1f})", file=sys.stderr,
                  flush=True)
    if device.type == "cuda":
        results["matmul_peak_tflops"] = matmul_peak_tflops(device, dtype)
    return results


def environment(args: argparse.Namespace) -> dict:
    import transformers

    import posebh_hf

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "posebh_hf": getattr(posebh_hf, "__version__", "?")}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    machine = f"{platform.machine()} {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {args.threads}"
    if args.device == "cuda":
        machine += f", GPU {torch.cuda.get_device_name()}"
    return {"machine": machine, "versions": versions, "command": " ".join(["python", *sys.argv])}


def print_table(results: dict, env: dict, load: tuple[float, float]) -> None:
    print(f"\nP1 inference, {env['machine']}; load average {load[0]:.1f} before, {load[1]:.1f} after")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    print(f"command: {env['command']}")
    peak = results.get("matmul_peak_tflops")
    if peak:
        print(f"measured matmul peak: {peak:.1f} TFLOP/s")
    scale = max(row["max_abs_ref"] for row in results["rows"])
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; heatmap values up to {scale:.2f} in magnitude "
          "(max abs diff is against transformers on the same input)")
    header = "| batch | path | img/s | x transformers | per-round range | max abs diff | GFLOPs/img | GFLOP/s |"
    if peak:
        header += " % of peak |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in results["rows"]:
        rate = row["img_s"] * row["gflops_per_img"]
        low, high = row["paired_ratios"]
        line = (f"| {row['batch']} | {row['path']} | {row['img_s']:.2f} | {row['speedup']:.2f} | {low:.2f}-{high:.2f} | "
                f"{row['max_abs_diff']:.1e} | {row['gflops_per_img']:.1f} | {rate:.0f} |")
        if peak:
            line += f" {100 * rate / 1000 / peak:.0f} % |"
        print(line)
    for key, value in results["setup"].items():
        print(f"{key}: {value:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per batch size (x3 at batch 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "posebh-bench")
    parser.add_argument("--extras", action="store_true", help="also eager attention, channels-last head, compile")
    parser.add_argument("--compile", action="store_true", help="also torch.compile of the merged network")
    parser.add_argument("--onnx", action="store_true", help="also onnxruntime (CPU) on the exported file")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = benchmark(args)
    env = environment(args)
    print_table(results, env, (load_before, os.getloadavg()[0]))
    if args.json:
        args.json.write_text(json.dumps({**env, **results}, indent=1))


if __name__ == "__main__":
    main()
