"""One row of a batch, as a task runs it (on any machine of the cluster): the row's command, the
same function `python -m backend generate|register|rig` runs, into a hidden folder, then
published whole as OUT/<name>.

    OUT/.batch/rows/<name>/started.jsonl   one line per attempt: pid, host, time (a retry adds one)
    OUT/.batch/rows/<name>/attempt-K-PID/  where attempt K writes; removed by the next attempt
    OUT/<name>/                            the published result: the command's outputs and its
                                           report.json, whose "batch" entry names the row it was
                                           made for (spec: a hash of its command and arguments)
                                           and its files with their sizes

An attempt that dies (a lost worker, a killed process) leaves at most its hidden folder, which the
next attempt removes before it starts: a result is either published whole or not at all. The
row's outcome is returned as a record (status, error, seconds, peak memory, device, model
revisions) for the driver's batch.jsonl; a failure of the row's own (a corrupt clip, a missing
mesh) is a "failed" record, not an exception, so that it is not retried: only lost workers are.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Optional

from ...errors import BackendError, BadInput
from ...jobs import JobContext

WORKSPACE = ".batch"
# register writes no report.json: the batch writes one of this kind for its rows.
REGISTER_REPORT_KIND = "actionmesh-register"


def row_space(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / WORKSPACE / "rows" / name


def append_jsonl(path: Path, entry: dict) -> None:
    """One JSON line appended whole and synced (batch.jsonl, started.jsonl: a reader on another
    machine of a shared folder sees whole lines, or a last one cut by a crash)."""
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry, default=str) + "\n")
        log.flush()
        os.fsync(log.fileno())


def read_jsonl(path: Path) -> list:
    """The entries of a JSON-lines file; a line cut short by a killed writer is left out."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def attempts_of(out_dir: Path, name: str, run: str) -> list:
    """The attempts of row `name` in run `run` so far (started.jsonl's lines): [{pid, host, time}]."""
    try:
        entries = read_jsonl(row_space(out_dir, name) / "started.jsonl")
    except OSError:
        return []
    return [e for e in entries if e.get("run") == run]


def run_row(out: str, row: dict, run: str) -> dict:
    """The task: row {name, command, args, spec, line, manifest} -> its record (see the module)."""
    out_dir = Path(out)
    name = row["name"]
    space = row_space(out_dir, name)
    space.mkdir(parents=True, exist_ok=True)
    _clear_earlier_attempts(space, out_dir, name)
    attempt = _log_start(space, out_dir, name, run)
    record = {"status": "failed", "attempts": attempt, "host": socket.gethostname(), "pid": os.getpid()}
    _share_threads()
    meter = PeakMemory()
    started = time.monotonic()
    try:
        result = _run_and_publish(space / f"attempt-{attempt}-{os.getpid()}", out_dir / name, row, run)
        record.update(status="done", error=None, code=None, out=str(out_dir / name), **_summary(result))
    except BackendError as exc:
        record.update(error=exc.message, code=exc.code)
    except MemoryError:
        record.update(error="the row ran out of memory", code="out_of_memory")
    except Exception as exc:  # our bug or a library's: the row fails with it, the batch goes on
        record.update(error=f"{type(exc).__name__}: {exc}", code="internal",
                      traceback=traceback.format_exc(limit=8)[-4000:])
    finally:
        record.update(seconds=round(time.monotonic() - started, 3), **meter.stop())
    shutil.rmtree(space / f"attempt-{attempt}-{os.getpid()}", ignore_errors=True)
    return record


def _share_threads() -> None:
    """OpenCV's threads to the CPUs the row asked for (Ray sets OMP_NUM_THREADS, which torch
    follows, to them; OpenCV, which the fit's optical flow runs on, would take every core)."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import cv2

        cv2.setNumThreads(int(threads))


def _clear_earlier_attempts(space: Path, out_dir: Path, name: str) -> None:
    """What an attempt that died left: its hidden folder, and a replaced result whose removal it
    did not finish."""
    for stale in space.glob("attempt-*"):
        shutil.rmtree(stale, ignore_errors=True)
    clear_replaced(out_dir, name)


def clear_replaced(out_dir: Path, name: str) -> None:
    """Earlier results of row `name` whose removal a killed publish did not finish
    (backend.pipelines.generate.outputs.publish names them .NAME.replaced-PID)."""
    for stale in Path(out_dir).glob(f".{name}.replaced-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _log_start(space: Path, out_dir: Path, name: str, run: str) -> int:
    append_jsonl(space / "started.jsonl", {"run": run, "pid": os.getpid(), "host": socket.gethostname(),
                                           "time": time.time()})
    return len(attempts_of(out_dir, name, run))


def _run_and_publish(stage: Path, final: Path, row: dict, run: str) -> dict:
    from ..generate import run_generate
    from ..generate.outputs import publish
    from ..register import run_register
    from ..rig import run_rig

    if final.exists() and not (final.is_dir() and batch_entry(final) is not None) and any(_entries(final)):
        raise BadInput(f"{final} exists and holds no result of a batch: move it away or give the row another name")
    stage.mkdir(parents=True)
    target = stage / "out"
    command = row["command"]
    fn = {"generate": run_generate, "register": run_register, "rig": run_rig}[command]
    result = fn(JobContext(), out=str(target), **row["args"])
    report_path = target / "report.json"
    # generate and rig write their own report.json; register (no report of its own) gets one here
    report = json.loads(report_path.read_text()) if report_path.is_file() else {
        "kind": REGISTER_REPORT_KIND, "command": command, "settings": row["args"], **result}
    report, result = _moved(report, target, final), _moved(result, target, final)
    report["batch"] = {"name": row["name"], "spec": row["spec"], "manifest": row.get("manifest"),
                       "line": row.get("line"), "run": run,
                       "files": {p.name: _size(p) for p in sorted(target.iterdir()) if p.name != "report.json"}}
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    publish(target, final)
    return {**result, "report_json": report}


def _entries(folder: Path):
    try:
        return list(folder.iterdir())
    except OSError:
        return [folder]


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _moved(value, old: Path, new: Path):
    """`value` (a report or result) with the paths under `old` (where the row was written) named
    under `new` (where it is published)."""
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    if isinstance(value, str) and value.startswith(str(old)):
        return str(new) + value[len(str(old)):]
    return value


def batch_entry(folder: Path) -> Optional[dict]:
    """The "batch" entry of a published row's report.json, None when there is none."""
    try:
        report = json.loads((Path(folder) / "report.json").read_text())
    except (OSError, ValueError):
        return None
    entry = report.get("batch") if isinstance(report, dict) else None
    return entry if isinstance(entry, dict) else None


def is_complete(folder: Path, spec: str) -> bool:
    """A rerun skips a row whose published folder is whole and was made for the same row: its
    report.json's batch entry has the row's spec and every file it lists is there, at its size."""
    entry = batch_entry(folder)
    if entry is None or entry.get("spec") != spec or not isinstance(entry.get("files"), dict):
        return False
    try:
        return all(_size(Path(folder) / name) == size for name, size in entry["files"].items())
    except OSError:
        return False


def _summary(result: dict) -> dict:
    """What batch.jsonl keeps of a finished row: device, model revisions, warnings."""
    report = result.pop("report_json")
    return {"device": result.get("device") or "cpu", "models": model_revisions(report),
            "warnings": list(result.get("warnings", []))}


def model_revisions(report: dict) -> dict:
    """{model: revision} of what made the row: the store's models (their found revision, else the
    pinned one), a prompt's video model, register's weights folder."""
    out = {}
    for name, entry in (report.get("models") or {}).items():
        if isinstance(entry, dict):
            out[name] = entry.get("found_revision") or entry.get("pinned_revision")
    prompt = report.get("prompt")
    if isinstance(prompt, dict) and prompt.get("model"):
        out[prompt["model"]] = prompt.get("found_revision") or prompt.get("pinned_revision")
    if report.get("weights"):
        out["weights"] = report["weights"]
    return out


class PeakMemory:
    """The process's peak resident memory while a row runs (sampled every 0.1 s: the process is a
    reused worker, so its lifetime peak would mix rows), and the GPU's peak allocation."""

    def __init__(self, interval: float = 0.1):
        self._peak = 0
        self._stop = threading.Event()
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:  # accelerate brings psutil; without it, the lifetime peak
            self._process = None
        self._gpu = _cuda()
        if self._gpu is not None:
            self._gpu.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, interval: float) -> None:
        while not self._stop.is_set():
            self._read()
            self._stop.wait(interval)

    def _read(self) -> None:
        if self._process is not None:
            try:
                self._peak = max(self._peak, self._process.memory_info().rss)
            except Exception:  # the process is going away
                pass

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(1.0)
        self._read()
        peak = self._peak
        if self._process is None:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        gpu = self._gpu or _cuda()
        return {"peak_rss_mib": round(peak / 2 ** 20, 1),
                "peak_gpu_mib": None if gpu is None else round(gpu.max_memory_allocated() / 2 ** 20, 1)}


def _cuda():
    """torch.cuda where a row has started it, else None (never imports torch itself)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda
