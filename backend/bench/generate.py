"""Generation benchmark: `generate`'s seconds (and GPU memory) per stage, beside a baseline.

    python -m backend bench generate [--models DIR] [--input FRAMES] [--frames 16,31] [--json PATH]

The clip: a folder of frames (default ../shared/examples/panda, 16 RGBA PNGs of 512 x 512); a
longer clip plays them forward then backward (31 frames = 0..15, 14..0), so every frame count
runs on the same images.

What runs depends on what is installed:

- the released weights (facebook/ActionMesh, VAST-AI/TripoSG, facebook/dinov2-large) and a CUDA
  GPU: for each frame count, the default, --fast and --low-vram presets; seconds and peak GPU
  memory per stage (report.json's StageMeter), printed beside the release's own figures (H100,
  16 frames: ~75 s default, ~45 s fast; 32 GB default, 12 GB low-RAM; ../shared/design.md §1).
- small stand-ins (`python -m backend models tiny-random DIR`; recognised by their parameter
  counts, under 1 % of the released models', or forced with --tiny): the pipeline's own
  overhead on the CPU. The networks' work is cut to the least the code paths allow (1 Stage 0
  step, 1 Stage I step, a 64^3 extraction grid) and the time spent inside network calls is
  measured and taken out (a global forward hook: the time from entering an outermost
  nn.Module call to leaving it), leaving what the pipeline itself costs per stage: reading
  the frames, alpha and crop, model loading, surface extraction's grid work, the clean-up,
  Stage II's glue, writing the outputs. Baseline from the same run: the time to read the same
  frames and write an animation.npz of the same size, the floor any pipeline stands on.
- otherwise it says what is missing (each model's state and the command that fetches it, as
  `generate` would; and/or "no CUDA GPU") and exits 0: nothing to measure is not a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .common import write_json

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INPUT = REPO.parent / "shared" / "examples" / "panda"
MODEL_NAMES = ("actionmesh", "dinov2", "triposg")
# A stand-in is a model with under this fraction of the released parameter count.
SMALL_FRACTION = 0.01
# Overhead mode: the least network work every code path still runs with.
OVERHEAD_SETTINGS = dict(stage0_steps=1, stage1_steps=1, resolution=64)
PRESETS = {"default": {}, "fast": {"fast": True}, "low-vram": {"low_vram": True}}
# report.json's stage names, plus the two the job does not meter (timed here from its progress).
STAGE_ORDER = ("prepare", "stage0", "image_tokens", "stage1", "stage2", "write")
PROGRESS_STAGE = {"prepare": "prepare", "stage0": "stage0", "tokens": "image_tokens", "stage1": "stage1",
                  "stage2": "stage2", "write": "write"}


# ---------------------------------------------------------------- what is installed


def safetensors_parameters(path: Path) -> int:
    """Parameter count of a .safetensors file from its header alone (no tensor is read)."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    return sum(int(np.prod(entry["shape"], dtype=np.int64)) for key, entry in header.items() if key != "__metadata__")


def inspect_models(models_dir: Optional[str]) -> dict:
    """{"missing": [message per model not ready], "models": {name: parameters, released estimate,
    small}}. The released count is the registry's size / 4 bytes (its sizes are float32 weights
    or the files' sizes), enough to tell a stand-in from a release."""
    from ..hub import READY, get_model, open_store
    from ..hub.store import not_ready_message

    store = open_store(models_dir)
    out = {"store": store.describe(), "missing": [], "models": {}}
    for name in MODEL_NAMES:
        spec = get_model(name)
        status = store.status(spec)
        if status.state != READY:
            out["missing"].append(not_ready_message(status, models_dir))
            continue
        params = sum(safetensors_parameters(status.folder / f) for f in spec.weights_files)
        released = spec.size_bytes // 4
        out["models"][name] = {"repo_id": spec.repo_id, "parameters": params, "released_parameters": released,
                               "small": params < SMALL_FRACTION * released}
    return out


def clip_folder(source: Path, count: int, folder: Path) -> Path:
    """`count` frames from the frames in `source`, played forward, backward, forward..., as links."""
    frames = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(frames) < 2:
        raise SystemExit(f"bench generate: {source} holds fewer than 2 frames")
    cycle = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    folder.mkdir(parents=True)
    for i in range(count):
        # Zero-padded names: natural and plain sorting agree.
        (folder / f"frame_{i:04d}{frames[0].suffix}").symlink_to(frames[cycle[i % len(cycle)]].resolve())
    return folder


# ---------------------------------------------------------------- timing


class NetworkTimer:
    """Seconds spent inside outermost nn.Module calls, per pipeline stage (the stage being the
    one the job last reported progress for). CPU only: on a GPU a call returns before its
    kernels finish, so this would time the launches."""

    def __init__(self):
        self.depth = 0
        self.entered = 0.0
        self.stage = "prepare"
        self.seconds: Dict[str, float] = {}
        self.handles = []

    def __enter__(self):
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        def pre(module, args):
            if self.depth == 0:
                self.entered = time.perf_counter()
            self.depth += 1

        def post(module, args, output):
            self.depth -= 1
            if self.depth == 0:
                self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + time.perf_counter() - self.entered

        self.handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def run_once(clip: Path, out: Path, models_dir: Optional[str], *, device: str, settings: dict,
             time_networks: bool) -> dict:
    """One run_generate; -> per-stage seconds (report.json's, plus prepare and write from the
    progress events), GPU peaks where metered, network seconds where timed, and the sizes."""
    from ..jobs import JobContext
    from ..pipelines import run_generate

    marks: Dict[str, List[float]] = {}
    timer = NetworkTimer()

    def sink(stage, step, total, message):
        name = PROGRESS_STAGE.get(stage, stage)
        marks.setdefault(name, []).append(time.perf_counter())

    started = time.perf_counter()
    if time_networks:
        from ..pipelines import generate as job

        class Meter(job.StageMeter):
            """The job's own meter, also telling the timer which stage runs: progress events
            come late (Stage I reports after its first step), the meter's bounds do not."""

            @contextlib.contextmanager
            def __call__(self, name):
                timer.stage = name
                with super().__call__(name):
                    yield
                timer.stage = "write"  # what follows the last metered stage

        real = job.StageMeter
        job.StageMeter = Meter  # run_generate looks it up when it runs; restored below
        try:
            with timer:
                result = run_generate(JobContext(sink), input=str(clip), out=str(out), models_dir=models_dir,
                                      device=device, **settings)
        finally:
            job.StageMeter = real
    else:
        result = run_generate(JobContext(sink), input=str(clip), out=str(out), models_dir=models_dir,
                              device=device, **settings)
    ended = time.perf_counter()
    report = json.loads((out / "report.json").read_text())
    stages = {name: dict(entry) for name, entry in report["stages"].items()}
    # Not metered by the job: from the call's start (argument checks, model look-up) to the last
    # "prepare" event, and from the first "write" event to the call's return.
    stages["prepare"] = {"seconds": round(marks["prepare"][-1] - started, 3)}
    stages["write"] = {"seconds": round(ended - marks["write"][0], 3)}
    ordered = {k: stages[k] for k in STAGE_ORDER if k in stages}
    ordered.update({k: v for k, v in stages.items() if k not in ordered})
    if time_networks:
        for name, entry in ordered.items():
            net = timer.seconds.get(name, 0.0)
            entry["network_seconds"] = round(net, 3)
            entry["overhead_seconds"] = round(max(entry["seconds"] - net, 0.0), 3)
    peaks = [e["peak_gpu_mb"] for e in ordered.values() if "peak_gpu_mb" in e]
    return {"frames": result["frames"], "vertices": result["vertices"], "faces": result["faces"],
            "seconds": round(ended - started, 3), "peak_gpu_mb": max(peaks) if peaks else None, "stages": ordered}


def baseline_seconds(clip: Path, vertices: int, faces: int, folder: Path) -> float:
    """Read the clip's frames and write an animation.npz of the given size: the floor."""
    from ..io import read_frames
    from ..meshio import write_animation_npz

    started = time.perf_counter()
    frames = read_frames(str(clip))
    v = np.zeros((vertices, 3))
    f = np.zeros((faces, 3), dtype=np.int64)
    write_animation_npz(folder / "baseline.npz", v, f, np.zeros((len(frames), vertices, 3)), frames.fps)
    return round(time.perf_counter() - started, 3)


# ---------------------------------------------------------------- the benchmark


def run(models_dir: Optional[str], frame_counts: List[int], source: Path, tiny: bool = False) -> dict:
    import torch

    from .plan import RELEASE

    found = inspect_models(models_dir)
    small = tiny or any(m["small"] for m in found["models"].values())
    cuda = torch.cuda.is_available()
    results = {"store": found["store"], "models": found["models"], "release": RELEASE, "cuda": cuda,
               "frames": frame_counts, "input": str(source), "runs": []}
    missing = list(found["missing"])
    if not small and not cuda:  # the release's figures need both: say every gap at once
        missing.append("no CUDA GPU: the released models are benchmarked on one (torch sees none)")
    if missing:
        results.update(mode="unavailable", missing=missing)
        return results
    results["mode"] = "overhead" if small else "gpu"
    presets = {"overhead": OVERHEAD_SETTINGS} if small else PRESETS
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        root = Path(tmp)
        for count in frame_counts:
            clip = clip_folder(source, count, root / f"clip_{count}")
            for preset, settings in presets.items():
                print(f"  {count} frames, {preset} ...", file=sys.stderr, flush=True)
                out = root / f"out_{count}_{preset}"
                row = run_once(clip, out, models_dir, device="cpu" if small else "cuda", settings=settings,
                               time_networks=small)
                row["preset"] = preset
                row["baseline_seconds"] = baseline_seconds(clip, row["vertices"], row["faces"], root)
                results["runs"].append(row)
    return results


def table(results: dict) -> str:
    lines = [f"models: {results['store']}"]
    for name, m in results.get("models", {}).items():
        lines.append(f"  {m['repo_id']:<24}{m['parameters']:>15,} parameters"
                     + (" (small stand-in)" if m["small"] else ""))
    if results["mode"] == "unavailable":
        lines.append("nothing to measure:")
        lines += [f"  - {m}" for m in results["missing"]]
        return "\n".join(lines)
    release = results["release"]
    if results["mode"] == "overhead":
        lines.append("the pipeline's own overhead on the CPU (networks cut to "
                     + ", ".join(f"{k} {v}" for k, v in OVERHEAD_SETTINGS.items())
                     + "; their time measured and taken out); seconds")
        head = f"{'stage':<14}" + "".join(f"{str(r['frames']) + ' fr: total':>16}{'networks':>10}{'overhead':>10}"
                                          for r in results["runs"])
        lines.append(head)
        for stage in STAGE_ORDER:
            cells = ""
            for r in results["runs"]:
                e = r["stages"].get(stage, {})
                cells += (f"{e.get('seconds', 0):>16.2f}{e.get('network_seconds', 0):>10.2f}"
                          f"{e.get('overhead_seconds', 0):>10.2f}")
            lines.append(f"{stage:<14}{cells}")
        lines.append(f"{'whole call':<14}" + "".join(
            f"{r['seconds']:>16.2f}{sum(e.get('network_seconds', 0) for e in r['stages'].values()):>10.2f}"
            f"{sum(e.get('overhead_seconds', 0) for e in r['stages'].values()):>10.2f}" for r in results["runs"]))
        for r in results["runs"]:
            over = sum(e.get("overhead_seconds", 0) for e in r["stages"].values())
            lines.append(f"{r['frames']} frames ({r['vertices']:,} vertices, {r['faces']:,} faces): overhead "
                         f"{over:.2f} s; baseline (read the frames + write animation.npz of that size) "
                         f"{r['baseline_seconds']:.2f} s = {over / max(r['baseline_seconds'], 1e-6):.1f}x")
        lines.append(f"(the release on an {release['device']}, networks included: ~{release['seconds_default']:.0f} s "
                     f"default, ~{release['seconds_fast']:.0f} s fast for 16 frames)")
        return "\n".join(lines)
    lines.append(f"seconds and peak GPU memory (GiB) per stage on {results.get('gpu', 'the CUDA GPU')}")
    for r in results["runs"]:
        lines.append(f"{r['frames']} frames, {r['preset']}: {r['seconds']:.1f} s, peak "
                     f"{(r['peak_gpu_mb'] or 0) / 1024:.1f} GiB; baseline {r['baseline_seconds']:.2f} s")
        for stage, e in r["stages"].items():
            peak = f"{e['peak_gpu_mb'] / 1024:>8.1f}" if "peak_gpu_mb" in e else f"{'':>8}"
            lines.append(f"    {stage:<14}{e['seconds']:>8.1f}{peak}")
    ref = {"default": (release["seconds_default"], release["memory_gib_default"]),
           "fast": (release["seconds_fast"], None), "low-vram": (None, release["memory_gib_low_ram"])}
    lines.append(f"the release ({release['device']}, 16 frames):")
    for preset, (sec, mem) in ref.items():
        ours = [r for r in results["runs"] if r["preset"] == preset and r["frames"] == 16]
        mine = (f"ours {ours[0]['seconds']:.1f} s, {(ours[0]['peak_gpu_mb'] or 0) / 1024:.1f} GiB" if ours
                else "ours: not run at 16 frames")
        theirs = ", ".join(x for x in (f"~{sec:.0f} s" if sec else "", f"{mem:.0f} GB" if mem else "") if x)
        lines.append(f"  {preset:<10}release {theirs:<16}{mine}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend bench generate", description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None,
                   help="models folder laid out like the hub repositories (default: the Hugging Face hub cache)")
    p.add_argument("--frames", default="16,31", help="comma-separated frame counts (default 16,31)")
    p.add_argument("--input", default=str(DEFAULT_INPUT), help="a folder of frames (default: the panda example)")
    p.add_argument("--tiny", action="store_true", help="measure the overhead even if the models look full-size")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    try:
        counts = [int(x) for x in args.frames.split(",") if x.strip()]
    except ValueError:
        p.error(f"--frames {args.frames!r}: expected comma-separated integers, e.g. 16,31")
    if not counts or min(counts) < 2:
        p.error("--frames: each count must be at least 2")
    if not Path(args.input).is_dir():
        p.error(f"--input {args.input}: not a folder of frames")
    results = run(args.models, counts, Path(args.input), tiny=args.tiny)
    if results["mode"] == "gpu":
        import torch

        results["gpu"] = torch.cuda.get_device_name(0)
    print(table(results))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
