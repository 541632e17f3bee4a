"""CPU training throughput of the synthetic study's trainings: images/s of each candidate setting, side by side.

    .venv/bin/python benchmarks/bench_train_step.py                       # V1, V2 alone, V2 distilled (~15 min)
    .venv/bin/python benchmarks/bench_train_step.py --models featherface_v2 --rounds 2 --steps 4

What is timed is the trainer's own step (`Trainer._train_step`) fed by its DataLoader, with the
`synthetic_cpu` recipe (320 px, batch 8, AdamW, one loader process), on the synthetic training set
(SYNTHETIC DATA). Every candidate runs in fresh processes, and the candidates take turns round after
round (`--rounds`), so that a drift of the machine's speed reaches all of them alike; each figure is
the median over rounds. Candidates:

- baseline          one training, 2 threads, contiguous tensors, foreach AdamW, V1's deformable
                    convolutions sampling their inputs first (the study before);
- project_first     the same with the deformable convolutions projecting first (V1 only; the
                    default now: `ffcore.models.context.deform_conv2d_grid_sample`);
- channels_last     the same as baseline with NHWC tensors (oneDNN's preferred layout for convolutions);
- fused_adamw       the same with the fused AdamW kernel;
- one_thread        one training at 1 thread (what each of two side-by-side trainings gets);
- side_by_side      two 1-thread trainings at once; their images/s added (the study's `train_workers=2`);
- tuned             side by side with everything that helped: projecting first, and what the synthetic
                    recipe now records (channels_last). Fused AdamW did not help (0.88-1.13x alone) and
                    stays off.

`--compile` adds `torch.compile` (inductor) of the trained module at 2 threads, with its compile time
reported apart. GFLOP/s counts forward + backward as 3x fvcore's multiply-adds (x2 flops) per image;
the peak is cores x 2 FMA units x 8 float32 lanes (AVX2) x 2 flops x the clock /proc/cpuinfo gives.
Run on an idle machine: the load average is printed before and after, and a loaded machine's
ratios are wrong, not just noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODELS = ("featherface_v1", "featherface_v2", "featherface_v2_distilled")
DISTILLED = "featherface_v2_distilled"     # V2 trained from a V1 teacher: the teacher's forward is in the step


@dataclass(frozen=True)
class Candidate:
    name: str
    processes: int = 1
    threads: int = 2
    channels_last: bool = False
    fused_optimizer: bool = False
    compile: bool = False
    project_first: bool = False      # V1's deformable convolutions: project, then sample (else sample first)


CANDIDATES = {
    "baseline": Candidate("baseline"),
    "project_first": Candidate("project_first", project_first=True),
    "channels_last": Candidate("channels_last", channels_last=True),
    "fused_adamw": Candidate("fused_adamw", fused_optimizer=True),
    "one_thread": Candidate("one_thread", threads=1),
    "side_by_side": Candidate("side_by_side", processes=2, threads=1),
    # fused AdamW left out: 0.88-1.13x alone in the reference measurement, i.e. no gain
    "tuned": Candidate("tuned", processes=2, threads=1, channels_last=True, project_first=True),
}
COMPILE = Candidate("compile", compile=True, project_first=True)


# ------------------------------------------------------------------------------------------ child

def child(spec: dict) -> dict:
    """Time `spec["steps"]` steps after `spec["warmup"]`; returns images/s and seconds spent compiling."""
    import torch

    torch.set_num_threads(spec["threads"])
    import tempfile

    from ffcore.models import context as context_module

    if not spec["project_first"]:
        # the formulation before: every ModulatedDeformConv2d looks the function up at call time
        context_module.deform_conv2d_grid_sample = context_module.deform_conv2d_sample_first

    from ffcore.engine.config import DistillConfig, get_preset
    from ffcore.engine.distill import DistillationTask
    from ffcore.engine.distributed import DistributedContext
    from ffcore.engine.run_log import RunLogger
    from ffcore.engine.supervised import DetectionTask, build_model, multibox_loss_for
    from ffcore.engine.trainer import Trainer, _EpochRun

    name = spec["model"]
    student = "featherface_v2" if name == DISTILLED else name
    with tempfile.TemporaryDirectory(prefix="ffcore_train_step_") as out:
        config = get_preset("synthetic_cpu", model=student, data_root=spec["data"], out_dir=out,
                            channels_last=spec["channels_last"], fused_optimizer=spec["fused_optimizer"],
                            progress=False, tensorboard=False, val_every=0)
        model = build_model(student, {}, False, seed=0)     # the start does not change the step's time
        loss = multibox_loss_for(model, config)
        if name == DISTILLED:
            teacher = build_model("featherface_v1", {}, False, seed=1)
            task = DistillationTask(model, teacher, loss, DistillConfig())
        else:
            task = DetectionTask(model, loss)
        trainer = Trainer(config, task, DistributedContext(device=torch.device("cpu")))
        logger = RunLogger(Path(out), enabled=False, tensorboard=False)
        run = trainer._setup(resume=False, logger=logger)
        compile_s = 0.0
        if spec["compile"]:
            run.trained = torch.compile(run.module)
        mix_rng = trainer._begin_epoch(run, 0)
        outcome = _EpochRun(started=time.perf_counter(), steps_planned=10 ** 9)

        def batches():
            while True:
                yield from run.loader

        stream = batches()

        def step() -> None:
            images, targets, unreadable = next(stream)
            if not trainer._train_step(run, outcome, outcome.steps_done, images, targets, unreadable, mix_rng,
                                       logger):
                raise RuntimeError(f"{name}: the training step stopped: {outcome.failure}")

        if spec["compile"]:
            start = time.perf_counter()
            step()
            compile_s = time.perf_counter() - start
        for _ in range(spec["warmup"]):
            step()
        start = time.perf_counter()
        for _ in range(spec["steps"]):
            step()
        elapsed = time.perf_counter() - start
    return {"images_per_s": config.batch_size * spec["steps"] / elapsed, "compile_s": compile_s}


# ----------------------------------------------------------------------------------------- parent

def run_candidate(candidate: Candidate, model: str, data: Path, warmup: int, steps: int) -> dict:
    """Start the candidate's processes together; images/s summed over them."""
    spec = {"model": model, "data": str(data), "warmup": warmup, "steps": steps, "threads": candidate.threads,
            "channels_last": candidate.channels_last, "fused_optimizer": candidate.fused_optimizer,
            "compile": candidate.compile, "project_first": candidate.project_first}
    env = {**os.environ, "OMP_NUM_THREADS": str(candidate.threads), "MKL_NUM_THREADS": str(candidate.threads)}
    processes = [subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                                  stdout=subprocess.PIPE, text=True) for _ in range(candidate.processes)]
    results = []
    for process in processes:
        stdout, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{candidate.name} / {model}: the timing process failed (exit {process.returncode})")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return {"images_per_s": sum(r["images_per_s"] for r in results),
            "compile_s": max(r["compile_s"] for r in results)}


def multiply_adds_per_image(model: str, size: int = 320) -> float:
    """fvcore's multiply-adds of one forward pass at size x size (V1's teacher forward added for distillation)."""
    from ffcore.complexity import count_flops
    from ffcore.models import create_model

    names = ["featherface_v2", "featherface_v1"] if model == DISTILLED else [model]
    return sum(count_flops(create_model(n), size, size)["total"] for n in names)


def training_flops_per_image(model: str) -> float:
    """Forward + backward as 3x the forward's flops, except a distillation teacher's forward (1x)."""
    if model == DISTILLED:
        return 2 * (3 * multiply_adds_per_image("featherface_v2") + multiply_adds_per_image("featherface_v1"))
    return 2 * 3 * multiply_adds_per_image(model)


def peak_gflops() -> tuple[float, str]:
    """cores x 2 FMA units x 8 lanes (AVX2 float32) x 2 flops x clock; the basis stated with it."""
    cores = os.cpu_count() or 1
    mhz = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                mhz = float(line.split(":")[1])
                break
    except OSError:
        pass
    ghz = (mhz or 2500.0) / 1000
    basis = f"{cores} cores x 2 FMA x 8 lanes x 2 flops x {ghz:.2f} GHz" + ("" if mhz else " (clock assumed)")
    return cores * 2 * 8 * 2 * ghz, basis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help=f"registered models, or {DISTILLED} (V2 with a V1 teacher)")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--compile", action="store_true", help="add torch.compile at 2 threads (minutes to compile)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the figure is the median over them")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per process and round")
    parser.add_argument("--data", default=None, help="WIDER-format root (default: the synthetic training set)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if min(args.rounds, args.steps) < 1 or args.warmup < 0:
        parser.error("--rounds and --steps must be >= 1, --warmup >= 0")

    from ffcore.data.synth import SynthConfig, ensure_synthetic_dataset
    from ffcore.paths import default_synthetic_root

    data = Path(args.data) if args.data else ensure_synthetic_dataset(
        default_synthetic_root() / "throughput", SynthConfig(train_images=400, val_images=10))
    candidates = [CANDIDATES[name] for name in args.candidates] + ([COMPILE] if args.compile else [])
    peak, basis = peak_gflops()
    load_before = os.getloadavg()[0]
    print(f"SYNTHETIC DATA {data} | synthetic_cpu recipe, 320 px, batch 8 | {args.rounds} rounds of "
          f"{args.warmup} + {args.steps} steps per process | load average {load_before:.2f}", flush=True)
    rates: dict[tuple[str, str], list[float]] = {}
    compile_s: dict[str, float] = {}
    for round_index in range(args.rounds):
        for model in args.models:
            for candidate in candidates:
                result = run_candidate(candidate, model, data, args.warmup, args.steps)
                rates.setdefault((model, candidate.name), []).append(result["images_per_s"])
                if candidate.compile:
                    compile_s[model] = result["compile_s"]
                print(f"  round {round_index + 1}: {model:<26} {candidate.name:<14} "
                      f"{result['images_per_s']:7.2f} images/s", flush=True)

    print(f"\nmedian images/s over {args.rounds} rounds; x = against baseline in the same rounds; "
          f"GFLOP/s against a peak of {peak:.0f} ({basis}); load average now {os.getloadavg()[0]:.2f}")
    print(f"{'model':<26} {'candidate':<14} {'images/s':>9} {'x':>6} {'GFLOP/s':>8} {'% peak':>7}")
    table = []
    for model in args.models:
        flops = training_flops_per_image(model)
        base = statistics.median(rates[(model, "baseline")]) if (model, "baseline") in rates else None
        for candidate in candidates:
            rate = statistics.median(rates[(model, candidate.name)])
            gflops = rate * flops / 1e9
            ratio = rate / base if base else float("nan")
            extra = f"  (compile {compile_s[model]:.0f} s)" if candidate.compile else ""
            print(f"{model:<26} {candidate.name:<14} {rate:9.2f} {ratio:6.2f} {gflops:8.1f} "
                  f"{100 * gflops / peak:6.1f}%{extra}")
            table.append({"model": model, "candidate": candidate.name, "images_per_s": rate,
                          "rounds": rates[(model, candidate.name)], "ratio_to_baseline": ratio,
                          "gflops": gflops, "peak_gflops": peak, "compile_s": compile_s.get(model)})
    if args.json:
        from ffcore.report.provenance import git_state

        record = {"dataset": "synthetic", "git": git_state(), "load_average_before": load_before,
                  "load_average_after": os.getloadavg()[0], "rounds": args.rounds, "warmup": args.warmup,
                  "steps": args.steps, "peak_basis": basis, "rows": table}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
