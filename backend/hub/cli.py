"""`python -m backend models ...` and `python -m backend weights manifest NAME`.

    models list        [--models-dir DIR] [--json]    every model: state, size, licence, folder
    models verify      [NAME ...] [--models-dir DIR] [--json]
                       exit 2 naming what is missing/partial and the command that fetches it
    models path NAME   [--models-dir DIR]             the folder holding the model's files
    models download    NAME|all [--models-dir DIR] [--accept-licence] [--token T] [--json]
    models remove      NAME [--models-dir DIR]        delete that model's files (only ours, only there)
    models tiny-random DIR [--seed N] [--hub-cache CACHE] [--with-rmbg] [--with-video]
                       small random models in the released layouts (tests, offline checks)
    weights manifest NAME                         {parameter: shape} of our module, official config

Without --models-dir, models live in the Hugging Face hub cache (HF_HUB_CACHE / HF_HOME); see
store.py for both layouts. Errors print one line `error (<code>): <message>` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List

from ..errors import BackendError
from .registry import MODELS, get_model, resolve_names
from .store import READY, ModelStatus, not_ready_message, open_store


def _models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend models",
                                description="the released models the pipeline needs: state, download, paths")
    sub = p.add_subparsers(dest="action", required=True)
    where = dict(default=None, metavar="DIR",
                 help="a models folder laid out DIR/<org>/<name>/... (default: the Hugging Face hub cache)")

    ls = sub.add_parser("list", help="every model with its licence, size, state and folder")
    ls.add_argument("--models-dir", **where)
    ls.add_argument("--json", action="store_true")

    ve = sub.add_parser("verify", help="exit 2 unless every needed file is present and whole")
    ve.add_argument("names", nargs="*", help="models to check (default: every required one; 'all': all)")
    ve.add_argument("--models-dir", **where)
    ve.add_argument("--json", action="store_true")

    pa = sub.add_parser("path", help="print the folder holding a model's files")
    pa.add_argument("name", help=f"one of {', '.join(MODELS)}")
    pa.add_argument("--models-dir", **where)

    dl = sub.add_parser("download", help="download at the pinned revision (resumable)")
    dl.add_argument("names", nargs="+", metavar="NAME", help=f"{', '.join(MODELS)} or all")
    dl.add_argument("--models-dir", **where)
    dl.add_argument("--accept-licence", "--accept-license", action="store_true", dest="accept_licence",
                    help="accept the non-commercial licences of the models that have one")
    dl.add_argument("--token", default=None,
                    help="Hugging Face access token (default: $HF_TOKEN, or the one `hf auth login` stored); "
                         "never printed")
    dl.add_argument("--json", action="store_true", help="progress as JSON lines on stderr")

    rm = sub.add_parser("remove", help="delete a model's files from the models folder or the hub cache")
    rm.add_argument("name", help=f"one of {', '.join(MODELS)}")
    rm.add_argument("--models-dir", **where)
    rm.add_argument("--json", action="store_true")

    tr = sub.add_parser("tiny-random", help="write small random models in the released layouts")
    tr.add_argument("dir", help="models folder to write (DIR/<org>/<name>/...)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--hub-cache", default=None, metavar="CACHE",
                    help="also lay the set out as a Hugging Face hub cache in CACHE, at the pinned revisions")
    tr.add_argument("--with-rmbg", action="store_true",
                    help="also write a small random RMBG-1.4 (background removal for frames without alpha; "
                         "its masks are random)")
    tr.add_argument("--with-video", action="store_true",
                    help="also write small random versions of the prompt path's video models (generate --prompt)")
    return p


# ---------------------------------------------------------------- list / verify / path


def _row(status: ModelStatus) -> List[str]:
    spec = status.spec
    state = status.state + ("" if spec.required else " (optional)")
    return [spec.name, state, spec.size_text(), spec.licence.describe(), str(status.folder)]


def _print_table(rows: List[List[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])


def cmd_list(args) -> int:
    store = open_store(args.models_dir)
    statuses = [store.status(spec) for spec in MODELS.values()]
    if args.json:
        print(json.dumps(dict(store=store.describe(), models=[s.to_dict() for s in statuses])))
        return 0
    print(f"where: {store.describe()}")
    _print_table([["model", "state", "size", "licence", "folder"]] + [_row(s) for s in statuses])
    for s in statuses:
        for note in s.notes:
            print(f"note: {s.spec.name}: {note}")
    return 0


def cmd_verify(args) -> int:
    store = open_store(args.models_dir)
    explicit = bool(args.names)
    specs = resolve_names(args.names)
    if not explicit:  # optional models are reported too, but do not fail the check
        specs = specs + tuple(m for m in MODELS.values() if not m.required)
    statuses = [store.status(spec) for spec in specs]
    failing = [s for s in statuses if s.state != READY and (explicit or s.spec.required)]
    if args.json:
        print(json.dumps(dict(ok=not failing, store=store.describe(), models=[s.to_dict() for s in statuses])))
    else:
        for s in statuses:
            print(f"{s.spec.name}: {s.state} ({s.folder})")
    for s in statuses:
        if s.state != READY and s not in failing:
            print(f"note: optional {not_ready_message(s, args.models_dir)}", file=sys.stderr)
    for s in failing:
        print(f"error (missing_model): {not_ready_message(s, args.models_dir)}", file=sys.stderr)
    return 2 if failing else 0


def cmd_path(args) -> int:
    spec = get_model(args.name)
    store = open_store(args.models_dir)
    status = store.status(spec)
    if status.state != READY:
        print(f"error (missing_model): {not_ready_message(status, args.models_dir)}", file=sys.stderr)
        return 2
    print(status.folder)
    return 0


# ---------------------------------------------------------------- download


def cmd_download(args) -> int:
    from .download import announce, check_licences, check_online, describe_event, download_model, redact, token_from

    token = token_from(args.token, os.environ)
    specs = resolve_names(args.names)
    store = open_store(args.models_dir)

    def emit(event: dict) -> None:
        line = json.dumps(event) if args.json else describe_event(event)
        print(redact(line, token), file=sys.stderr, flush=True)

    try:
        for spec in specs:  # what, how big, which licence: said before anything is fetched
            print(announce(spec), file=sys.stderr)
        check_licences(specs, args.accept_licence)  # refuse before downloading any of them
        # Whole models are left alone (no network needed: this works offline too); the rest is fetched.
        pending = []
        for spec in specs:
            status = store.status(spec)
            if status.state == READY:
                emit(dict(event="already_ready", model=spec.name, folder=str(status.folder)))
                print(status.folder)
            else:
                pending.append(spec)
        if pending:
            check_online(store, pending)
        for spec in pending:
            status = download_model(spec, store, emit, token=token, accept_licence=args.accept_licence,
                                    progress_interval=1.0 if args.json else 5.0)
            print(status.folder)
    except BackendError as exc:
        print(redact(f"error ({exc.code}): {exc.message}", token), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; partial files are kept and the next download resumes them", file=sys.stderr)
        return 130
    return 0


# ---------------------------------------------------------------- remove


def cmd_remove(args) -> int:
    from .remove import remove_model

    result = remove_model(get_model(args.name), open_store(args.models_dir))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['repo_id']}: removed {len(result['removed'])} file(s) from {result['folder']}; "
              f"now {result['state']}")
    return 0


# ---------------------------------------------------------------- tiny-random


def cmd_tiny_random(args) -> int:
    from .tiny import copy_to_hub_cache, write_tiny_random

    summary = write_tiny_random(args.dir, seed=args.seed, rmbg=args.with_rmbg)
    if args.with_video:
        from .tiny_video import write_tiny_video

        summary["models"] += write_tiny_video(args.dir, seed=args.seed)
    if args.hub_cache:
        summary["hub_cache"] = copy_to_hub_cache(args.dir, args.hub_cache)
    print(json.dumps(summary))
    return 0


COMMANDS = {"list": cmd_list, "verify": cmd_verify, "path": cmd_path, "download": cmd_download,
            "remove": cmd_remove, "tiny-random": cmd_tiny_random}


def models_main(argv) -> int:
    args = _models_parser().parse_args(argv)
    try:
        return COMMANDS[args.action](args)
    except BackendError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------- weights manifest


def weights_main(argv) -> int:
    from .architectures import OFFICIAL_MODELS

    p = argparse.ArgumentParser(prog="python -m backend weights",
                                description="our modules' parameter layout for the official configs")
    sub = p.add_subparsers(dest="action", required=True)
    ma = sub.add_parser("manifest", help="print {parameter: shape} JSON, built without memory (meta device)")
    ma.add_argument("name", choices=sorted(OFFICIAL_MODELS))
    args = p.parse_args(argv)
    from .architectures import manifest_json

    print(manifest_json(args.name))
    return 0

