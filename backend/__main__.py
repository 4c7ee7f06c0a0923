"""`python -m backend <command>`: the service for the add-on, and the same work from a shell."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import BackendError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend", description="ActionMesh backend")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="JSON-lines service on stdin/stdout (used by the Blender add-on)")

    reg = sub.add_parser("register", help="animate a reference mesh to follow a folder of per-frame meshes")
    reg.add_argument("--reference", required=True, help="the mesh whose topology is kept (obj, ply, stl, glb)")
    reg.add_argument("--sequence", required=True, help="folder with one mesh per frame, sorted by name")
    reg.add_argument("--out", required=True, help="output folder: animation.npz and animated.glb")
    reg.add_argument("--method", default="optimize", choices=["optimize", "learned", "auto"])
    reg.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    reg.add_argument("--fps", type=float, default=24.0)
    reg.add_argument("--json", action="store_true", help="print the result as one JSON line")

    ex = sub.add_parser("example", help="write a synthetic example: a reference mesh and a sequence to register")
    ex.add_argument("--out", required=True)
    ex.add_argument("--frames", type=int, default=16)
    ex.add_argument("--seed", type=int, default=0)

    bench = sub.add_parser("bench", help="benchmarks that print figures against a baseline")
    bench.add_argument("name", choices=["register"])
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .service import serve

        return serve()
    if args.command == "bench":
        from .bench.register import main as bench_register

        return bench_register(args.rest)
    if args.command == "example":
        from .synthetic.example import write_creature_example

        info = write_creature_example(args.out, n_frames=args.frames, seed=args.seed)
        print(json.dumps(info))
        return 0
    if args.command == "register":
        from .jobs import JobContext, console_sink
        from .pipelines import run_register

        try:
            result = run_register(JobContext(console_sink()), reference=args.reference, sequence=args.sequence,
                                  out=args.out, method=args.method, device=args.device, fps=args.fps)
        except BackendError as exc:
            print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; nothing was written", file=sys.stderr)
            return 130
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['frames']} frames x {result['vertices']} vertices in {result['seconds']:.1f} s\n"
                  f"  {result['animation']}\n  {result['glb']}")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
