# SPDX-License-Identifier: GPL-3.0-or-later
"""The one backend process and the one job of this Blender session, and what the preferences'
jobs last learned (no bpy here).

The backend is started on first use and kept warm between jobs, so model weights stay loaded;
it is restarted when it died or when the chosen interpreter changed, and stopped when the
add-on is disabled. Listeners are called on every job update (the UI redraws from them; tests
use them to cancel or kill mid-job).
"""

from __future__ import annotations

from .backend_client import BackendProcess, Job

_backend: BackendProcess | None = None
current_job: Job | None = None
listeners: list = []

# What the preferences show, runtime only (never saved: each describes the disk or the backend at
# the moment it was asked). The model manager's list and its last job (busy, progress, message,
# error); it is forgotten when the Models Folder changes.
models_status: dict = {"store": "", "models": [], "message": "", "error": "", "busy": "", "progress": 0.0,
                       "updated": 0.0}
# The backend Check's last answer, and the Set Up Backend run.
check_result: dict = {"outputs": None, "message": "", "error": "", "busy": "", "progress": 0.0, "updated": 0.0}
setup_state: dict = {"running": False, "step": "", "error": "", "done": ""}


def forget_models() -> None:
    models_status.update(store="", models=[], message="", error="")


def get_backend(python: str, *, cwd: str | None = None) -> BackendProcess:
    global _backend
    if _backend is not None and (not _backend.alive() or _backend.python != python):
        _backend.stop()
        _backend = None
    if _backend is None:
        _backend = BackendProcess(python, cwd=cwd)
    return _backend


def backend_pid() -> int | None:
    return _backend.pid if _backend is not None and _backend.alive() else None


def notify(job: Job) -> None:
    for listener in list(listeners):
        listener(job)


def busy() -> bool:
    return current_job is not None and not current_job.finished


def shutdown() -> None:
    global _backend, current_job
    if current_job is not None and not current_job.finished:
        current_job.cancel()
    current_job = None
    if _backend is not None:
        _backend.stop()
        _backend = None
