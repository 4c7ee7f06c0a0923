"""Many clips as one job (`batch`): every row of a manifest run through the same function as
`generate`, `register` or `rig`, as Ray tasks on this machine or on a cluster.

    manifest  the rows (CSV or JSON lines; .manifest says the columns)
    engine    Ray: a local cluster started here, or an existing one (--ray)
    rows      one row as a task runs it: into a hidden folder, published whole as OUT/<name>
    progress  rows done / failed / running and the time left

OUT/batch.jsonl (append-only) gets one line per row and run: status (done, failed, skipped,
cancelled), the error's message and code, seconds, peak memory (RAM, GPU), device, the model
revisions, attempts, host; and a line when a run starts and when it ends. A rerun skips the rows
whose published folder is whole and made for the same row (its report.json says so: rows.is_complete;
batch.jsonl is a record, never the judge) and runs the others again, failed ones included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import List, Optional

from ...errors import BadInput, Cancelled
from ...jobs import JobContext
from .engine import Cluster, check_gpus, preflight, task_gpus
from .manifest import Row, read_manifest
from .progress import BatchProgress
from .rows import WORKSPACE, append_jsonl, attempts_of, clear_replaced, is_complete, read_jsonl, run_row

LOG_NAME = "batch.jsonl"
PROGRESS_EVERY = 5.0  # seconds between progress events when nothing but the time left changes


def run_batch(ctx: JobContext, *, manifest: str, out: str, ray: Optional[str] = None, gpus_per_task: float = 1.0,
              cpus_per_task: float = 1.0, retries: int = 2) -> dict:
    """Run every row of `manifest` into `out`/<name> (see the module). `ray`: None for a Ray
    cluster of this machine started for the batch, "auto" or an address for an existing one.
    `gpus_per_task`: GPUs each row that uses one asks for (fractions share one), on a cluster
    that has GPUs; `cpus_per_task`: CPUs each row asks for; `retries`: how often a row whose
    worker was lost (killed, crashed, its machine gone) is started again. Returns the counts,
    the failed rows with their messages, and where the log is."""
    started = time.monotonic()
    gpus_per_task, cpus_per_task, retries = _check_numbers(gpus_per_task, cpus_per_task, retries)
    rows = read_manifest(manifest)
    preflight(ray)
    out_dir = Path(out).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:12]
    summary = {"out": str(out_dir), "log": str(out_dir / LOG_NAME), "manifest": str(Path(manifest).expanduser()),
               "rows": len(rows), "done": 0, "failed": 0, "skipped": 0, "cancelled": 0, "failed_rows": [],
               "engine": None, "engine_start_seconds": None, "engine_stop_seconds": None, "warnings": []}
    with _lock(out_dir):
        _clear_workspace(out_dir, rows)
        log = BatchLog(out_dir / LOG_NAME, run)
        log.write({"kind": "run", "event": "start", "manifest": summary["manifest"], "rows": len(rows),
                   "ray": ray, "gpus_per_task": gpus_per_task, "cpus_per_task": cpus_per_task, "retries": retries})
        todo = [r for r in rows if not is_complete(out_dir / r.name, r.spec)]
        progress = BatchProgress(len(rows), skipped=len(rows) - len(todo))
        for row in rows:
            if row not in todo:
                log.row(row, {"status": "skipped", "error": None, "out": str(out_dir / row.name),
                              "reason": "its published folder is whole and was made for this row"})
        summary["skipped"] = progress.skipped
        ctx.progress("batch", progress.finished, progress.total, progress.message())
        try:
            if todo:
                _run_on_cluster(ctx, ray, todo, out_dir, run, log, progress, summary,
                                gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, retries=retries)
        finally:
            summary["seconds"] = round(time.monotonic() - started, 3)
            log.write({"kind": "run", "event": "end", **{k: summary[k] for k in (
                "done", "failed", "skipped", "cancelled", "engine", "engine_start_seconds", "engine_stop_seconds",
                "seconds")}})
    ctx.progress("batch", progress.finished, progress.total, progress.message())
    return summary


def _check_numbers(gpus_per_task, cpus_per_task, retries) -> tuple:
    try:
        gpus, cpus = float(gpus_per_task), float(cpus_per_task)
    except (TypeError, ValueError):
        raise BadInput(f"--gpus-per-task and --cpus-per-task are numbers, got {gpus_per_task!r}, "
                       f"{cpus_per_task!r}") from None
    if gpus < 0 or cpus <= 0:
        raise BadInput(f"--gpus-per-task must be 0 or more and --cpus-per-task more than 0, got {gpus:g}, {cpus:g}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise BadInput(f"--retries must be an integer of at least 0, got {retries!r}")
    return gpus, cpus, retries


def _run_on_cluster(ctx: JobContext, address: Optional[str], todo: List[Row], out_dir: Path, run: str, log,
                    progress: BatchProgress, summary: dict, *, gpus_per_task: float, cpus_per_task: float,
                    retries: int) -> None:
    cluster = Cluster(address)
    try:
        with cluster:
            summary["engine"] = cluster.description
            summary["engine_start_seconds"] = round(cluster.start_seconds, 3)
            check_gpus(gpus_per_task, cluster)
            if cluster.gpus == 0 and gpus_per_task > 0 and any(task_gpus(r, 1, 1) for r in todo):
                summary["warnings"].append("the cluster has no GPU: the rows that would use one run on CPUs")
            task = cluster.ray.remote(run_row)
            pending = {}
            for row in todo:
                payload = {"name": row.name, "command": row.command, "args": row.args, "spec": row.spec,
                           "line": row.line, "manifest": summary["manifest"]}
                ref = task.options(num_cpus=cpus_per_task, num_gpus=task_gpus(row, gpus_per_task, cluster.gpus),
                                   max_retries=retries, retry_exceptions=False, name=f"batch {row.name}").remote(
                    str(out_dir), payload, run)
                pending[ref] = row
            _wait(ctx, cluster.ray, pending, out_dir, run, log, progress, summary, retries)
    finally:
        summary["engine_stop_seconds"] = round(cluster.stop_seconds, 3)


def _wait(ctx: JobContext, ray, pending: dict, out_dir: Path, run: str, log, progress: BatchProgress,
          summary: dict, retries: int) -> None:
    """Records the rows as they finish, with progress, until none is left; a cancel (the service's,
    or Ctrl-C) stops the rows still running and records them as cancelled."""
    started, shown, last = set(), None, 0.0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
            for ref in ready:
                row = pending.pop(ref)
                started.discard(row.name)
                record = _outcome(ray, ref, row, out_dir, run, retries)
                log.row(row, record)
                key = "done" if record["status"] == "done" else "failed"
                summary[key] += 1
                setattr(progress, key, getattr(progress, key) + 1)
                if key == "failed":
                    summary["failed_rows"].append({"name": row.name, "line": row.line, "error": record["error"]})
            started |= {r.name for r in pending.values() if r.name not in started and attempts_of(out_dir, r.name, run)}
            progress.running = len(started)
            if progress.state() != shown or time.monotonic() - last > PROGRESS_EVERY:
                shown, last = progress.state(), time.monotonic()
                ctx.progress("batch", progress.finished, progress.total, progress.message())
            ctx.check_cancel()
    except (Cancelled, KeyboardInterrupt):
        for ref, row in pending.items():
            ray.cancel(ref, force=True)
            log.row(row, {"status": "cancelled", "error": "the batch was cancelled before the row finished"})
            summary["cancelled"] += 1
        raise


def _outcome(ray, ref, row: Row, out_dir: Path, run: str, retries: int) -> dict:
    """The task's record, or a failed one saying how its worker was lost."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # run_row itself raised (its rows' own errors are records)
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        return {"status": "failed", "code": "internal", "attempts": len(attempts_of(out_dir, row.name, run)),
                "error": f"{type(cause).__name__}: {cause}"[:2000]}
    except ray.exceptions.RayError as exc:
        attempts = len(attempts_of(out_dir, row.name, run))
        text = str(exc).strip().splitlines()
        return {"status": "failed", "code": "worker_lost", "attempts": attempts,
                "error": f"the worker running this row was lost ({type(exc).__name__}) on each of its {attempts} "
                         f"attempt(s) (1 + --retries {retries}): {text[0] if text else ''}"[:2000]}


def _clear_workspace(out_dir: Path, rows: List[Row]) -> None:
    """What earlier runs left that no one finishes now (this run holds the lock): attempts' hidden
    folders, and replaced results whose removal was cut short."""
    shutil.rmtree(out_dir / WORKSPACE / "rows", ignore_errors=True)
    for row in rows:
        clear_replaced(out_dir, row.name)
    (out_dir / WORKSPACE / "rows").mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _lock(out_dir: Path):
    """One batch at a time in a folder (an advisory lock on OUT/.batch/lock; a shared folder's
    file system must honour it, as NFSv4 and local disks do)."""
    path = out_dir / WORKSPACE / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            raise BadInput(f"another batch is writing to {out_dir} ({handle.read().strip() or 'unknown'}); wait for "
                           "it to end, or give another --out") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class BatchLog:
    """OUT/batch.jsonl, appended to a line at a time (each written whole and synced)."""

    def __init__(self, path: Path, run: str):
        self.path, self.run = path, run

    def write(self, entry: dict) -> None:
        append_jsonl(self.path, {"run": self.run, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry})

    def row(self, row: Row, record: dict) -> None:
        self.write({"kind": "row", "name": row.name, "line": row.line, "command": row.command, "spec": row.spec,
                    **record})


def read_log(path) -> List[dict]:
    """batch.jsonl's entries (a line cut short by a crash is left out)."""
    return read_jsonl(path)
