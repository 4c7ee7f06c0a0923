"""`python -m backend <command>`: the service for the add-on, and the same work from a shell."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import BackendError

BENCHES = ("register", "extract", "generate", "fit", "keys", "rig", "batch")
# The Blender extension carries what its users run; the benchmarks (backend/bench) and training
# (backend/train) stay in the repository, for developers.
DEVELOPER_TOOLS_MISSING = (
    "the benchmarks are developer tools: they are in the project's repository, not in the Blender "
    "extension. Clone the repository, run `python3 build.py setup` there, then `.venv/bin/python -m "
    "backend bench ...` (README, Benchmarks)")


def _has_developer_tools() -> bool:
    from pathlib import Path

    return (Path(__file__).resolve().parent / "bench" / "__init__.py").is_file()


def _parser() -> argparse.ArgumentParser:
    # One list of each command's methods: the pipelines' own.
    from .pipelines.generate.inputs import METHODS as GENERATE_METHODS
    from .pipelines.register import METHODS as REGISTER_METHODS

    p = argparse.ArgumentParser(prog="python -m backend", description="ActionMesh backend")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="JSON-lines service on stdin/stdout (used by the Blender add-on)")

    reg = sub.add_parser("register", help="animate a reference mesh to follow a folder of per-frame meshes")
    reg.add_argument("--reference", required=True, help="the mesh whose topology is kept (obj, ply, stl, glb)")
    reg.add_argument("--sequence", required=True, help="folder with one mesh per frame, sorted by name")
    reg.add_argument("--out", required=True, help="output folder: animation.npz and animated.glb")
    reg.add_argument("--method", default="learned-optimize", choices=REGISTER_METHODS,
                     help="learned-optimize (default): the learned Stage II prediction, then optimised, keeping per "
                          "frame the one closer to the frame's surface (optimisation alone when the learned weights "
                          "are not installed); learned: one forward pass; optimize: ARAP/ICP registration, no weights")
    reg.add_argument("--weights-dir", default=None,
                     help="folder with the learned weights, vae/ and stage2/ inside (default: backend/weights/tiny)")
    reg.add_argument("--profile", default="tiny", choices=["tiny", "actionmesh"],
                     help="tiny (default): our small shipped Stage II; actionmesh: the official Stage II (TripoSG's "
                          "VAE encoder + ActionMesh's autoencoder) from the model store (python -m backend models)")
    reg.add_argument("--models-dir", default=None,
                     help="models folder laid out like the hub repositories (default: the Hugging Face hub cache)")
    reg.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    reg.add_argument("--fps", type=float, default=24.0)
    reg.add_argument("--json", action="store_true", help="print the result as one JSON line")

    rec = sub.add_parser("reconstruct", help="mesh -> shape VAE latents -> mesh (the autoencoder round trip)")
    rec.add_argument("--input", required=True, help="mesh to encode (obj, ply, stl, glb)")
    rec.add_argument("--out", required=True, help="output mesh (.obj, .ply or .glb)")
    rec.add_argument("--profile", default="tiny", choices=["tiny", "triposg"])
    rec.add_argument("--weights-dir", default=None, help="a folder with config.json and model.safetensors")
    rec.add_argument("--resolution", type=int, default=256)
    rec.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    rec.add_argument("--json", action="store_true", help="print the result as one JSON line")

    gen = sub.add_parser("generate", help="video (or frames) -> animated mesh: ActionMesh's pipeline (Stage 0, I, II)")
    gen.add_argument("--input", default=None, help="a video file, or a folder of PNG/JPG frames (natural order)")
    gen.add_argument("--prompt", default=None, help="instead of --input: describe the subject and its motion; a video "
                     "model makes the clip (written as prompt_video.mp4; --frames 16-49, default 16)")
    gen.add_argument("--view", default=None, help="--prompt: the clip's first frame (with --mesh: an image of the mesh "
                     "in its pose, as the add-on renders it)")
    gen.add_argument("--video-model", default=None, help="--prompt: the video model (models list; default: "
                     "wan2.1-t2v-1.3b for text, wan2.2-ti2v-5b with --view)")
    gen.add_argument("--out", required=True, help="output folder (new or empty): animation.npz, animated.glb, "
                                                  "anchor.glb, report.json")
    gen.add_argument("--mesh", default=None, help="animate this mesh instead of generating one from frame 0; "
                                                  "the result keeps its vertices, order and coordinates")
    gen.add_argument("--method", default="learned", choices=GENERATE_METHODS,
                     help="learned (default): ActionMesh's models; fit: fit --mesh to the frames' masks and "
                          "optical flow on the CPU, no weights; learned-fit: learned, then fitted from its result, "
                          "when the models are stored, else fit")
    gen.add_argument("--camera", default=None, help="--method fit/learned-fit: the frames' camera (camera.json, OpenCV "
                                                    "convention, the mesh's coordinates); default: estimated from "
                                                    "frame 0's mask")
    gen.add_argument("--refuse-mismatch", action="store_true",
                     help="--method fit/learned-fit: fail, writing nothing, when the mesh covers frame 0's object poorly "
                          "even after placing the camera (instead of a warning)")
    gen.add_argument("--known", action="append", default=[], metavar="FRAME=MESH",
                     help="a keyframe's shape (frame counted in the selected frames, 1..T-1); repeatable")
    gen.add_argument("--loop", action="store_true", help="make the last frame's shape the first's")
    gen.add_argument("--masks", default=None, help="folder with one mask image per frame (white = subject)")
    gen.add_argument("--start", type=int, default=0, help="first frame to use (default 0)")
    gen.add_argument("--frames", type=int, default=None,
                     help="how many frames (default: the learned method reads at most 31, as the release; "
                          "--method fit reads to the end). More than 31 run as more windows, with a warning")
    gen.add_argument("--stride", type=int, default=1, help="use every N-th frame (default 1)")
    gen.add_argument("--fps", type=float, default=None, help="frame rate (default: the video's; 24 for a folder)")
    gen.add_argument("--seed", type=int, default=44)
    gen.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    gen.add_argument("--fast", action="store_true", help="the release's fast preset (50 / 15 steps)")
    gen.add_argument("--low-vram", action="store_true",
                     help="an 8 GB GPU: about 7.2 GiB at the peak for 16 frames instead of 13.5 (python -m backend "
                          "plan --low-vram); the flow transformers' Linear layers held in bf16 (autocast's own cast, "
                          "so the same numbers: max |diff| 0 on the parity cases), the guidance pair as two passes, "
                          "smaller decoding chunks; about the same time")
    gen.add_argument("--models-dir", default=None,
                     help="models folder laid out like the hub repositories (default: the Hugging Face hub cache)")
    gen.add_argument("--stage1-meshes", action="store_true",
                     help="also write each frame's Stage I shape (stage1/frame_XXXX.glb, stage1/latents.npy)")
    gen.add_argument("--stage0-steps", type=int, default=None, help="override TripoSG's steps (100; --fast 50)")
    gen.add_argument("--stage1-steps", type=int, default=None, help="override Stage I's steps (30; --fast 15)")
    gen.add_argument("--resolution", type=int, default=None,
                     help="surface extraction grid (default: the model set's own, else 512, the release's)")
    gen.add_argument("--json", action="store_true", help="print the result as one JSON line")

    pv = sub.add_parser("prompt-video", help="a prompt -> a short clip of one subject (the first step of generate "
                        "--prompt), to judge before the mesh job")
    pv.add_argument("--prompt", required=True, help="the subject and its motion")
    pv.add_argument("--out", required=True, help="the clip to write (.mp4)")
    pv.add_argument("--image", default=None, help="the first frame to continue (an image-to-video model)")
    pv.add_argument("--frames", type=int, default=16, help="clip length, 16-49 (default 16)")
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--video-model", default=None, help="default: wan2.1-t2v-1.3b, or wan2.2-ti2v-5b with --image")
    pv.add_argument("--models-dir", default=None, help="a folder with the models (default: the hub cache)")
    pv.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    pv.add_argument("--low-vram", action="store_true", help="offload the video model's parts to the CPU between uses")
    pv.add_argument("--json", action="store_true", help="print the result as one JSON line")

    rig = sub.add_parser("rig", help="animation -> a skinned rig (armature, weights, bone keys): rig.npz, rigged.glb")
    rig.add_argument("--animation", required=True, help="an animation.npz (what generate and register write)")
    rig.add_argument("--out", required=True, help="output folder (new or empty): rig.npz, rigged.glb, report.json")
    rig.add_argument("--bones", default="auto",
                     help="how many bones, or auto (default): 16, or 32 where 16 leave more than 1%% of the "
                          "mesh's size")
    rig.add_argument("--influences", type=int, default=4, help="bones per vertex at most (1-8, default 4)")
    rig.add_argument("--rig", default=None,
                     help="animate this rig instead of making one (rig.npz: its weights, joints and parents "
                          "are kept; backend/io/rig.py)")
    rig.add_argument("--seed", type=int, default=0)
    rig.add_argument("--json", action="store_true", help="print the result as one JSON line")

    bat = sub.add_parser("batch", help="many clips: every row of a manifest (CSV or JSON lines) through generate, "
                         "register or rig, as Ray tasks on this machine or a cluster; resumable")
    bat.add_argument("manifest", help="one job a row: name, command (generate, register, rig) and the command's "
                                      "options as columns (README, Many clips)")
    bat.add_argument("--out", required=True, help="folder for the rows' results (OUT/<name>) and batch.jsonl; "
                                                  "on a cluster, a folder every machine sees at this path")
    bat.add_argument("--ray", default=None, metavar="ADDRESS",
                     help="an existing Ray cluster: auto (this machine's), HOST:PORT or ray://HOST:PORT; default: a "
                          "Ray cluster of this machine, started for the batch")
    bat.add_argument("--gpus-per-task", type=float, default=1.0,
                     help="GPUs for each row that uses one (default 1; 0.5: two rows share a GPU); ignored on a "
                          "cluster without GPUs")
    bat.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs for each row (default 1)")
    bat.add_argument("--retries", type=int, default=2,
                     help="how often a row whose worker was lost is started again (default 2)")
    bat.add_argument("--json", action="store_true", help="print the summary as one JSON line")

    ex = sub.add_parser("example", help="write a synthetic example: a reference mesh and a sequence to register")
    ex.add_argument("--out", required=True)
    ex.add_argument("--frames", type=int, default=16)
    ex.add_argument("--seed", type=int, default=0)

    sub.add_parser("eval", help="ActionBench metrics (CD-3D, CD-4D, CD-M): --pred OUTDIR --gt GT.npz [--json]")

    bench = sub.add_parser("bench", help="benchmarks that print figures against a baseline")
    bench.add_argument("name", choices=BENCHES, help="then the benchmark's own options (--help)")

    # These own their options (dispatched in main before this parser runs); listed here for --help.
    sub.add_parser("models", help="the released models: list | verify | path | download | tiny-random (--help)")
    sub.add_parser("weights", help="weights manifest NAME: our parameter names and shapes for an official config")
    sub.add_parser("plan", help="parameters, FLOPs and memory per stage of the full-size pipeline, without "
                                "weights: [--frames N] [--fast] [--low-vram] [--memory GiB] (--help)")
    return p


def _run_job(fn, as_json: bool, **kwargs) -> int:
    """Run a pipeline with progress on stderr; errors become one clear line and exit code 2."""
    from .jobs import JobContext, console_sink

    try:
        result = fn(JobContext(console_sink()), **kwargs)
    except BackendError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "warnings":
                print(f"{key}: {value}")
    return 0


def _run_batch(args) -> int:
    """batch: a bar on stderr; exit 0 when every row is done (or was before), 1 when rows failed."""
    from .jobs import JobContext, bar_sink
    from .pipelines import run_batch

    import contextlib

    try:
        # Ray prints its own notices (a lost worker) to stdout: stdout carries only the summary.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_batch(JobContext(bar_sink()), manifest=args.manifest, out=args.out, ray=args.ray,
                               gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task,
                               retries=args.retries)
    except BackendError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: the rows done so far are published in {args.out} (batch.jsonl says which); run "
              "the same command again to go on", file=sys.stderr)
        return 130
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    for row in result["failed_rows"]:
        print(f"failed: {row['name']} (manifest line {row['line']}): {row['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("out", "log", "rows", "done", "failed", "skipped", "engine", "seconds"):
            print(f"{key}: {result[key]}")
    return 1 if result["failed"] else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # eval, bench, models, weights and plan own their options (argparse's REMAINDER cannot forward a
    # leading --flag).
    if argv[:1] == ["eval"]:
        from .eval.cli import main as eval_main

        return eval_main(argv[1:])
    if argv[:1] == ["models"]:
        from .hub.cli import models_main

        return models_main(argv[1:])
    if argv[:1] == ["weights"]:
        from .hub.cli import weights_main

        return weights_main(argv[1:])
    if argv[:1] == ["plan"]:
        from .pipelines.plan import main as plan_main

        return plan_main(argv[1:])
    if argv[:1] == ["bench"] and len(argv) > 1 and argv[1] in BENCHES:
        if not _has_developer_tools():
            print(DEVELOPER_TOOLS_MISSING, file=sys.stderr)
            return 2
        if argv[1] == "extract":
            from .bench.extract import main as bench_main
        elif argv[1] == "generate":
            from .bench.generate import main as bench_main
        elif argv[1] == "fit":
            from .bench.fit import main as bench_main
        elif argv[1] == "keys":
            from .bench.keys import main as bench_main
        elif argv[1] == "rig":
            from .bench.rig import main as bench_main
        elif argv[1] == "batch":
            from .bench.batch import main as bench_main
        else:
            from .bench.register import main as bench_main
        return bench_main(argv[2:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .service import serve

        return serve()
    if args.command == "batch":
        return _run_batch(args)
    if args.command == "example":
        from .synthetic.example import write_creature_example

        print(json.dumps(write_creature_example(args.out, n_frames=args.frames, seed=args.seed)))
        return 0
    if args.command == "register":
        from .pipelines import run_register

        return _run_job(run_register, args.json, reference=args.reference, sequence=args.sequence, out=args.out,
                        method=args.method, device=args.device, fps=args.fps, weights_dir=args.weights_dir,
                        profile=args.profile, models_dir=args.models_dir)
    if args.command == "generate":
        from .pipelines import run_generate

        return _run_job(run_generate, args.json, input=args.input, prompt=args.prompt, view=args.view,
                        video_model=args.video_model, out=args.out, mesh=args.mesh, known=args.known,
                        loop=args.loop, masks=args.masks, start=args.start, frames=args.frames, stride=args.stride,
                        fps=args.fps, seed=args.seed, device=args.device, fast=args.fast, low_vram=args.low_vram,
                        models_dir=args.models_dir, stage1_meshes=args.stage1_meshes, stage0_steps=args.stage0_steps,
                        stage1_steps=args.stage1_steps, resolution=args.resolution, method=args.method,
                        camera=args.camera, refuse_mismatch=args.refuse_mismatch)
    if args.command == "prompt-video":
        from .pipelines import make_clip

        return _run_job(make_clip, args.json, prompt=args.prompt, out=args.out, image=args.image, frames=args.frames,
                        seed=args.seed, video_model=args.video_model, models_dir=args.models_dir, device=args.device,
                        low_vram=args.low_vram)
    if args.command == "rig":
        from .pipelines import run_rig

        return _run_job(run_rig, args.json, animation=args.animation, out=args.out, bones=args.bones,
                        influences=args.influences, rig=args.rig, seed=args.seed)
    if args.command == "reconstruct":
        from .pipelines import run_reconstruct

        return _run_job(run_reconstruct, args.json, input=args.input, out=args.out, profile=args.profile,
                        weights_dir=args.weights_dir, resolution=args.resolution, device=args.device)
    return 1


if __name__ == "__main__":
    sys.exit(main())
