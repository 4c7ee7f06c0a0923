"""The model store as service jobs, for the add-on's model manager: the CLI's own functions.

    models_status    every model: name, repository, licence, size, state, folder
    models_verify    the same for some models, with what is wrong and the fetch command
    models_download  fetch models (licences accepted first; token optional and never echoed)
    models_remove    delete one model's files (only ours, only inside the chosen store)

`models_dir` picks a models folder (DIR/<org>/<name>/...); without it the Hugging Face hub cache
(backend/hub/store.py).

A download runs `python -m backend models download NAME --json` in a child process, one model at
a time: the very command a user runs from a shell, with its JSON progress events read from the
child's stderr and passed on as progress (bytes and files of the whole request). A cancel stops
the child at once, wherever it is in a file: huggingface_hub writes each file as `*.incomplete`
beside the store and moves it into place only when whole, so nothing half-written is ever in a
model's folder, and the next download resumes the partial file. The token travels to the child
in its environment (HF_TOKEN), never on its command line (other users can list those), and
every line read back is scrubbed of it before it goes anywhere.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional, Union

from ..errors import BackendError, BadInput, Cancelled
from ..jobs import JobContext
from ..hub.download import check_licences, check_online, describe_event, redact
from ..hub.registry import MODELS, ModelSpec, format_size, get_model, resolve_names
from ..hub.store import READY, ModelStatus, not_ready_message, open_store

BACKEND_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `backend` package
POLL_SECONDS = 0.1  # how often a download checks for a cancel while the child works


def _names(names: Union[None, str, List[str]]) -> List[str]:
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise BadInput(f"names must be a model name or a list of them, got {names!r}")
    return list(names)


def _describe(status: ModelStatus, models_dir: Optional[str]) -> dict:
    spec = status.spec
    entry = status.to_dict()
    entry.update(size_text=spec.size_text(), licence_url=spec.licence.url,
                 licence_text=spec.licence.describe(), problem=status.problem(),
                 fetch_command=spec.fetch_command(models_dir))
    return entry


def models_status(ctx: JobContext, *, models_dir: Optional[str] = None) -> dict:
    """Every registered model with its licence, size and state (missing / partial / ready)."""
    store = open_store(models_dir)
    models = []
    for i, spec in enumerate(MODELS.values()):
        ctx.progress("status", i, len(MODELS), f"checking {spec.repo_id}")
        models.append(_describe(store.status(spec), models_dir))
    return dict(store=store.describe(), kind=store.kind, root=str(store.root), models=models)


def models_verify(ctx: JobContext, *, names=None, models_dir: Optional[str] = None) -> dict:
    """The state of `names` (default: every model); `ok` when the asked-for (or required) ones are ready."""
    names = _names(names)
    specs = resolve_names(names) if names else tuple(MODELS.values())
    store = open_store(models_dir)
    models, problems = [], {}
    for i, spec in enumerate(specs):
        ctx.progress("verify", i, len(specs), f"checking {spec.repo_id}")
        status = store.status(spec)
        models.append(_describe(status, models_dir))
        if status.state != READY:
            problems[spec.name] = not_ready_message(status, models_dir)
    failing = [n for n in problems if names or MODELS[n].required]
    return dict(ok=not failing, store=store.describe(), models=models, problems=problems)


def models_remove(ctx: JobContext, *, name: str, models_dir: Optional[str] = None) -> dict:
    """Deletes one model's files from the chosen store (backend/hub/remove.py says which)."""
    from ..hub.remove import remove_model

    spec = get_model(name)
    ctx.progress("remove", 0, 1, f"removing {spec.repo_id}")
    result = remove_model(spec, open_store(models_dir))
    ctx.progress("remove", 1, 1, f"removed {len(result['removed'])} file(s)")
    return result


# ---------------------------------------------------------------- download


class _Child:
    """`python -m backend models download ...` with its stderr lines in a queue."""

    def __init__(self, argv: List[str], token: Optional[str]):
        env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"} if token else dict(os.environ)
        if token:
            env["HF_TOKEN"] = token
        env["PYTHONPATH"] = os.pathsep.join([str(BACKEND_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
        env["PYTHONUNBUFFERED"] = "1"
        self.lines: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "models", "download", *argv],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=str(BACKEND_ROOT), env=env, text=True, encoding="utf-8", errors="replace")
        self.stdout: List[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.lines), daemon=True).start()
        threading.Thread(target=self._collect, daemon=True).start()

    @staticmethod
    def _pump(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _collect(self) -> None:
        self.stdout.extend(line.strip() for line in self.proc.stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _download_one(ctx: JobContext, spec: ModelSpec, models_dir: Optional[str], accept_licence: bool,
                  token: Optional[str], done_before: int, total: int, log: List[str]) -> None:
    argv = [spec.name, "--json"] + (["--accept-licence"] if accept_licence else []) + \
        (["--models-dir", str(models_dir)] if models_dir else [])
    child = _Child(argv, token)
    error, current = None, done_before
    try:
        while True:
            if ctx.should_cancel():
                child.stop()
                raise Cancelled("download cancelled; partial files are kept and the next download resumes them")
            try:
                line = child.lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if line is None:
                break
            line = redact(line, token)
            log.append(line)
            del log[:-50]
            if line.startswith("error ("):
                error = line
                continue
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = event.get("event")
            if kind == "progress":
                current = max(current, done_before + min(int(event.get("bytes", 0)), spec.size_bytes))
                files = f", {event['files_done']}/{event['files']} files" if "files" in event else ""
                ctx.progress("download", current, total, f"{spec.name}: {format_size(event.get('bytes', 0))} of "
                             f"about {spec.size_text()}{files}")
            elif kind in ("start", "done", "remove_corrupt", "already_ready"):
                if kind in ("done", "already_ready"):
                    current = done_before + spec.size_bytes
                ctx.progress("download", current, total, redact(describe_event(event), token))
        code = child.proc.wait()
    finally:
        child.stop()
    if code != 0:
        if error:
            head, _, message = error.partition("): ")
            failure = BackendError(message)
            failure.code = head[len("error ("):] or "download_failed"
            raise failure
        tail = " | ".join(log[-3:])
        failure = BackendError(f"{spec.repo_id}: the download stopped (exit code {code}): {tail}")
        failure.code = "download_failed"
        raise failure


def models_download(ctx: JobContext, *, names, models_dir: Optional[str] = None, accept_licence: bool = False,
                    token: Optional[str] = None) -> dict:
    """Fetches `names` ("all": every model) at their pinned revisions into the chosen store.

    Non-commercial licences must be accepted (`accept_licence`) or nothing is fetched. `token`
    (optional; else HF_TOKEN or the stored login) reaches only huggingface_hub."""
    token = token or None
    try:
        specs = resolve_names(_names(names)) if _names(names) else ()
        if not specs:
            raise BadInput("name at least one model to download")
        check_licences(specs, accept_licence)  # refuse before anything is fetched
        store = open_store(models_dir)
        pending = [s for s in specs if store.status(s).state != READY]
        if pending:
            check_online(store, pending)
        total = max(1, sum(s.size_bytes for s in pending))
        done, log = 0, []
        for spec in pending:
            _download_one(ctx, spec, models_dir, accept_licence, token, done, total, log)
            done += spec.size_bytes
        ctx.progress("download", total, total, "done")
        return dict(store=store.describe(), downloaded=[s.name for s in pending],
                    already_ready=[s.name for s in specs if s not in pending],
                    models=[_describe(store.status(s), models_dir) for s in specs])
    except BackendError as exc:  # no message may carry the token, whoever wrote it
        exc.message = redact(exc.message, token)
        exc.args = (exc.message,)
        raise


__all__ = ["models_download", "models_remove", "models_status", "models_verify"]
