# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's side of the backend protocol: start `python -m backend serve`, talk, watch, stop.

No bpy here (so it is testable and reusable from plain scripts) and never torch: the backend is
another process with its own interpreter. A reader thread moves the backend's stdout lines into
a queue; Blender's main thread drains it with `poll()`, from a modal timer or a blocking loop.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

# Must equal backend.protocol.PROTOCOL_VERSION (a test checks); the add-on never imports the backend.
PROTOCOL_VERSION = 2
HELLO_TIMEOUT = 60.0  # first start imports numpy/scipy/trimesh, which is slow on a cold disk


class BackendUnavailable(RuntimeError):
    """The backend could not be started, died, or speaks another protocol version."""


def backend_source_root() -> Path:
    """The folder holding the `backend` package: bundled inside the extension, or the repo in development."""
    here = Path(__file__).resolve().parent
    for root in (here, here.parent):
        if (root / "backend" / "__main__.py").is_file():
            return root
    raise BackendUnavailable(f"the backend code is missing: no backend/ next to {here}")


class BackendProcess:
    """One running backend. Not thread-safe: call everything but the reader from one thread."""

    def __init__(self, python: str, *, cwd: str | None = None, env: dict | None = None):
        self.python = python
        self.stderr_tail: list[str] = []
        self._messages: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        root = backend_source_root()
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [full_env.get("PYTHONPATH")] if p])
        # The extension's folder must stay untouched (Blender clears it on upgrade).
        full_env["PYTHONDONTWRITEBYTECODE"] = "1"
        full_env["PYTHONUNBUFFERED"] = "1"
        if not Path(python).exists():
            raise BackendUnavailable(f"backend Python not found: {python}. Set it in the add-on preferences "
                                     "or with ACTIONMESH_BACKEND_PYTHON, or use 'Set Up Backend'")
        try:
            self._proc = subprocess.Popen(
                [python, "-m", "backend", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=cwd or str(root), env=full_env, text=True, encoding="utf-8",
                bufsize=1, start_new_session=False)
        except OSError as exc:
            raise BackendUnavailable(f"could not start the backend with {python}: {exc}") from exc
        threading.Thread(target=self._read_stdout, daemon=True, name="actionmesh-backend-out").start()
        threading.Thread(target=self._read_stderr, daemon=True, name="actionmesh-backend-err").start()
        self.hello = self._await_hello()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read_stdout(self) -> None:
        for line in self._proc.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                self._note_stderr(f"(unparsable backend line) {line.rstrip()[:200]}")
                continue
            if isinstance(message, dict):
                self._messages.put(message)
        self._messages.put({"type": "_eof"})

    def _read_stderr(self) -> None:
        for line in self._proc.stderr:
            self._note_stderr(line.rstrip())

    def _note_stderr(self, line: str) -> None:
        self.stderr_tail.append(line)
        del self.stderr_tail[:-40]

    def _await_hello(self) -> dict:
        try:
            message = self._messages.get(timeout=HELLO_TIMEOUT)
        except queue.Empty:
            self.kill()
            raise BackendUnavailable(f"the backend did not answer within {HELLO_TIMEOUT:.0f} s") from None
        if message.get("type") != "hello":
            self.kill()
            raise BackendUnavailable("the backend failed to start: " + self.describe_exit())
        if message.get("protocol") != PROTOCOL_VERSION:
            self.kill()
            raise BackendUnavailable(f"the backend speaks protocol {message.get('protocol')}, this add-on "
                                     f"{PROTOCOL_VERSION}: update the backend environment")
        return message

    def alive(self) -> bool:
        return self._proc.poll() is None

    def describe_exit(self) -> str:
        try:
            # The pipe closes a moment before the process is reaped; wait briefly for its status.
            code = self._proc.wait(0.5)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            state = "still running"
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            state = f"killed by signal {name}" + (", perhaps out of memory" if name == "SIGKILL" else "")
        else:
            state = f"exit code {code}"
        tail = "\n".join(self.stderr_tail[-8:])
        return state + (f"; last output:\n{tail}" if tail else "")

    def send(self, message: dict) -> None:
        if not self.alive():
            raise BackendUnavailable("the backend is not running (" + self.describe_exit() + ")")
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise BackendUnavailable(f"lost the connection to the backend: {exc}") from exc

    def new_job_id(self) -> str:
        return f"job-{os.getpid()}-{next(self._ids)}"

    def poll(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self._messages.get_nowait())
            except queue.Empty:
                return out

    def wait_message(self, timeout: float) -> dict | None:
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self, timeout: float = 3.0) -> None:
        """Ask politely (close stdin), then kill: a stopped add-on must leave no process behind."""
        if self.alive():
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()

    def kill(self) -> None:
        if self.alive():
            self._proc.kill()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._proc.stdin,):
            try:
                pipe.close()
            except OSError:
                pass


class Job:
    """One submitted job and what we know of it; `update()` folds in the backend's messages."""

    def __init__(self, backend: BackendProcess, command: str, args: dict):
        self.backend = backend
        self.id = backend.new_job_id()
        self.command = command
        self.state = "submitted"  # submitted -> running -> done | failed | cancelled
        self.stage = ""
        self.step = 0
        self.total = 0
        self.message = "starting"
        self.outputs: dict | None = None
        self.error_code = ""
        self.error = ""
        self.cancel_requested_at: float | None = None
        self.last_heard = time.monotonic()
        backend.send({"type": "submit", "job": self.id, "command": command, "args": args})

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0

    def cancel(self) -> None:
        if not self.finished and self.cancel_requested_at is None:
            self.cancel_requested_at = time.monotonic()
            try:
                self.backend.send({"type": "cancel", "job": self.id})
            except BackendUnavailable:
                pass

    def fail(self, code: str, message: str) -> None:
        self.state, self.error_code, self.error = "failed", code, message

    def handle(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "_eof":
            if not self.finished:
                self.fail("backend_died", "the backend stopped unexpectedly (" + self.backend.describe_exit() + ")")
            return
        if message.get("job") not in (self.id, None):
            return
        self.last_heard = time.monotonic()
        if kind == "accepted":
            self.state = "running"
        elif kind == "progress":
            self.stage, self.step, self.total = message.get("stage", ""), message.get("step", 0), message.get("total", 0)
            self.message = message.get("message", "")
        elif kind == "result":
            self.state, self.outputs = "done", message.get("outputs") or {}
        elif kind == "cancelled":
            self.state = "cancelled"
        elif kind == "error" and message.get("job") == self.id:
            self.fail(message.get("code", "error"), message.get("message", "unknown error"))

    def update(self, *, cancel_grace: float = 3.0, hang_timeout: float = 600.0) -> None:
        """Drain messages; enforce cancel and hang deadlines by killing the backend."""
        for message in self.backend.poll():
            self.handle(message)
            if self.finished:
                break
        if self.finished:
            return
        now = time.monotonic()
        if self.cancel_requested_at is not None and now - self.cancel_requested_at > cancel_grace:
            # The backend did not stop in time: stopping the process is the only sure cancel.
            self.backend.kill()
            self.state = "cancelled"
        elif now - self.last_heard > hang_timeout:
            self.backend.kill()
            self.fail("backend_hung", f"the backend sent nothing for {hang_timeout:.0f} s and was stopped")

    def wait(self, on_update=None, poll_interval: float = 0.05) -> None:
        """Block until finished (for scripts and `blender -b`, where no timer ever fires)."""
        while not self.finished:
            message = self.backend.wait_message(poll_interval)
            if message is not None:
                self.handle(message)
            self.update()
            if on_update is not None:
                on_update(self)
