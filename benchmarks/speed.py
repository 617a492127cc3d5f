"""Inference speed: wall time and real-time factor of the four-stem tasks at default settings.

    python benchmarks/speed.py                  # CPU (and the GPU too, when there is one)
    python benchmarks/speed.py --quick          # a few steps only: checks that the script works
    python benchmarks/speed.py --device cuda    # one device only
    python benchmarks/speed.py --threads 1      # one intra-op thread
    python benchmarks/speed.py --threads-steps 8  # also: each --threads setting, idle and with
                                                  # another process keeping every core busy

Tasks, each on 4 s of audio with the defaults of `gmsdi.pipeline` (GENERATION / SEPARATION):
4-stem generation, accompaniment of 1 locked + 3 generated stems, 4-stem separation. The model
is the bundled checkpoint when present, else the untrained default-size model (`build_model(
"default")`; weights do not change the cost). Real-time factor = wall seconds / audio seconds
(below 1 is faster than real time).

It also reports the network's throughput — audio seconds through the network per second, and
the FLOP rate that implies (FLOPs counted with torch's FlopCounterMode) as a fraction of a
float32 matmul FLOP rate measured in the same run: the share of the machine's arithmetic the
U-Net actually uses. Writes benchmarks/results/speed.md and speed.json. Numbers on a shared
machine are contended; the output says how many CPU threads ran and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from gmsdi.inference import window_samples  # noqa: E402
from gmsdi.models import build_model  # noqa: E402
from gmsdi.pipeline import BUNDLED_CHECKPOINT, GENERATION, SEPARATION, GMSDIPipeline  # noqa: E402
from gmsdi.sampling import network_evaluations  # noqa: E402
from gmsdi.text import build_text_encoder  # noqa: E402

SECONDS = 4.0
PROMPTS = ["bass", "drums", "guitar", "piano"]
RESULTS = Path(__file__).resolve().parent / "results"


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Median float32 matmul rate (GFLOP/s) of an n×n product on `device`."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for i in range(repeats + 2):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_sample(pipe: GMSDIPipeline, length: int) -> float:
    """Network FLOPs per audio sample of one row (counted at batch 1, `length` samples)."""
    emb = pipe.text_encoder.encode(["bass"], device=pipe.device)
    x = torch.zeros(1, 1, length, device=pipe.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        pipe.model(x, torch.full((1,), 0.5, device=pipe.device), emb)
    return counter.get_total_flops() / length


def load_pipeline(device: torch.device) -> tuple[GMSDIPipeline, str]:
    if BUNDLED_CHECKPOINT.is_file():
        return GMSDIPipeline.from_pretrained(device=device), BUNDLED_CHECKPOINT.name
    model = build_model("default", seed=0)
    encoder = build_text_encoder(model.model_config.text_encoder)
    return GMSDIPipeline(model, encoder, device=device), "untrained default-size model (build_model('default'))"


def run_tasks(pipe: GMSDIPipeline, quick: bool, window_seconds: float | None = None) -> list[dict]:
    sr = pipe.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * sr)) / sr
    bass = (0.3 * np.sin(2 * np.pi * 55 * t) * (0.6 + 0.4 * np.sign(np.sin(2 * np.pi * 2 * t)))).astype(np.float32)
    mix = (bass + 0.1 * rng.standard_normal(len(t))).astype(np.float32)
    gen_steps = 2 if quick else GENERATION.steps
    sep_steps = 16 if quick else SEPARATION.steps  # fewer would be refused: MSDM's Dirac form needs 14 for 4 stems
    w = {"window_seconds": window_seconds}
    tasks = [
        ("generate 4 stems", lambda: pipe.generate(PROMPTS, seconds=SECONDS, seed=0, steps=gen_steps, **w),
         GENERATION.sampler, gen_steps),
        ("accompany 1 locked + 3", lambda: pipe.accompany({"bass": bass}, PROMPTS[1:], seed=0, steps=gen_steps, **w),
         GENERATION.sampler, gen_steps),
        ("separate 4 stems", lambda: pipe.separate(mix, PROMPTS, seed=0, steps=sep_steps, **w),
         SEPARATION.sampler, sep_steps),
    ]
    pipe.generate(PROMPTS[:1], seconds=0.5, seed=0, steps=1)  # warm-up (allocator, text encoder)
    rows = []
    for name, fn, sampler, steps in tasks:
        _sync(pipe.device)
        t0 = time.perf_counter()
        result = fn()
        _sync(pipe.device)
        wall = time.perf_counter() - t0
        s = result.settings
        rows.append({
            "task": name, "seconds": SECONDS, "wall_s": wall, "rtf": wall / SECONDS, "sampler": sampler,
            "steps": steps, "evaluations_per_window": network_evaluations(sampler, steps, s["resamples"]),
            "chunks": s["chunks"], "network_calls": s["network_calls"], "network_samples": s["network_samples"],
        })
    return rows


def _cpu_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have spent busy (Linux /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def bench(device: torch.device, quick: bool, window_seconds: float | None = None, threads_steps: int = 0) -> dict:
    busy0, own0, t0 = _cpu_busy_seconds(), time.process_time(), time.perf_counter()
    pipe, model_name = load_pipeline(device)
    window = pipe.config.window_samples
    if window_seconds is not None:
        window = window_samples(window_seconds, pipe.sample_rate, pipe.length_multiple)
    fps = flops_per_sample(pipe, window)
    gflops = matmul_gflops(device)
    rows = run_tasks(pipe, quick, window_seconds)
    for r in rows:
        audio_s = r["network_samples"] / pipe.sample_rate
        r["network_audio_s_per_s"] = audio_s / r["wall_s"]
        r["network_gflops"] = fps * r["network_samples"] / r["wall_s"] / 1e9
        r["fraction_of_matmul"] = r["network_gflops"] / gflops
    # How much CPU other processes took during the run: a fair figure needs this near 0.
    busy1, own1, t1 = _cpu_busy_seconds(), time.process_time(), time.perf_counter()
    others = None
    if busy0 is not None and busy1 is not None:
        others = max(0.0, (busy1 - busy0) - (own1 - own0)) / ((t1 - t0) * (os.cpu_count() or 1))
    return {
        "device": str(device), "model": model_name, "threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpu_cores": os.cpu_count(), "other_processes_cpu_share": others,
        "window_samples": window, "sample_rate": pipe.sample_rate, "gflop_per_window_row": fps * window / 1e9,
        "matmul_gflops": gflops, "quick": quick, "tasks": rows,
        "mixed_precision": str(pipe.autocast_dtype) if pipe.autocast_dtype else "no",
        "threads_table": threads_table(pipe, threads_steps) if threads_steps and device.type == "cpu" else None,
    }


HOG = "import torch; torch.set_num_threads({n}); a = torch.randn(1024, 1024)\nwhile True: a @ a"


def threads_table(pipe: GMSDIPipeline, steps: int) -> list[dict]:
    """Wall time of 4-stem generation (`steps` Heun steps) at each thread setting, with the machine
    idle and with another process keeping every core busy (a torch matmul loop on all cores)."""
    from gmsdi.runtime import auto_threads, available_cores

    cores = available_cores()
    settings = sorted({cores, 1}, reverse=True)
    rows = []
    for load in ("idle", "busy"):
        hog = None
        if load == "busy":
            hog = subprocess.Popen([sys.executable, "-c", HOG.format(n=cores)])
            time.sleep(2.0)
        try:
            for setting in [*settings, "auto"]:
                n = auto_threads() if setting == "auto" else setting
                torch.set_num_threads(n)
                t0 = time.perf_counter()
                pipe.generate(PROMPTS, seconds=SECONDS, seed=0, steps=steps)
                rows.append({"load": load, "setting": str(setting), "threads": n,
                             "wall_s": time.perf_counter() - t0, "steps": steps})
                print(f"threads {setting} ({n}), {load}: {rows[-1]['wall_s']:.1f} s", file=sys.stderr)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    return rows


def to_markdown(runs: list[dict], command: str = "python benchmarks/speed.py") -> str:
    lines = ["# Inference speed", "",
             f"`{command}` on {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}.", ""]
    for run in runs:
        others = run.get("other_processes_cpu_share")
        if others is None:
            busy = f"{run['threads']} threads."
        else:
            verdict = ("the machine was otherwise idle" if others < 0.05 else
                       "other jobs shared the CPU, so these figures are contended")
            busy = (f"{run['threads']} threads on {run['cpu_cores']} cores; other processes used "
                    f"{100 * others:.0f} % of the CPU during the run ({verdict}).")
        lines += [f"## {run['device']} — {run['model']}", "", busy,
                  f"Window {run['window_samples']} samples at {run['sample_rate']} Hz; "
                  f"{run['gflop_per_window_row']:.2f} GFLOP per window and row; "
                  f"float32 matmul {run['matmul_gflops']:.0f} GFLOP/s; mixed precision {run['mixed_precision']}."
                  + (" **Quick run (2 steps): not the default settings.**" if run["quick"] else ""), "",
                  "| task (4 s) | sampler, steps | windows | network calls | wall (s) | real-time factor | "
                  "network audio-s/s | network GFLOP/s | of matmul rate |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in run["tasks"]:
            lines.append(f"| {r['task']} | {r['sampler']}, {r['steps']} | {r['chunks']} | {r['network_calls']} | "
                         f"{r['wall_s']:.1f} | {r['rtf']:.2f} | {r['network_audio_s_per_s']:.1f} | "
                         f"{r['network_gflops']:.1f} | {100 * r['fraction_of_matmul']:.0f} % |")
        lines.append("")
        if run.get("threads_table"):
            steps = run["threads_table"][0]["steps"]
            lines += [f"**Threads** (`--threads`; generate 4 stems, 4 s, Heun {steps} steps; busy = another "
                      "process running a matmul loop on every core):", "",
                      "| machine | --threads | threads used | wall (s) |", "|---|---|---|---|"]
            lines += [f"| {r['load']} | {r['setting']} | {r['threads']} | {r['wall_s']:.1f} |"
                      for r in run["threads_table"]]
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu, plus cuda when available)")
    p.add_argument("--quick", action="store_true", help="2 steps per task: only checks that it runs")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--threads-steps", type=int, default=0,
                   help="also time generation at each thread setting, idle and busy, with this many steps (0: skip)")
    p.add_argument("--window-seconds", type=float, default=None,
                   help="model window (default: the model's training crop)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device(args.device)] if args.device else [torch.device("cpu")]
    if args.device is None and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    runs = []
    for device in devices:
        runs.append(bench(device, args.quick, args.window_seconds, args.threads_steps))
        for r in runs[-1]["tasks"]:
            print(f"{device} {r['task']}: {r['wall_s']:.1f} s, real-time factor {r['rtf']:.2f}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(runs, indent=2))
    command = " ".join(["python benchmarks/speed.py", *(argv if argv is not None else sys.argv[1:])])
    (args.out / "speed.md").write_text(to_markdown(runs, command))
    print(to_markdown(runs, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
