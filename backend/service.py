"""`python -m backend serve`: the long-lived backend the add-on talks to over stdin/stdout.

One job at a time runs in a worker thread so the reader keeps answering pings and cancels while
it works. Protocol lines go to a private duplicate of the original stdout; file descriptor 1
is pointed at stderr so that stray prints from libraries (Python or C) can never corrupt the
protocol stream.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import traceback

from . import __version__
from .errors import BackendError
from .jobs import JobContext
from .protocol import PROTOCOL_VERSION, ProtocolError, decode_client_message, encode


class Service:
    def __init__(self, out_stream, commands: dict):
        self._out = out_stream
        self._commands = commands
        self._lock = threading.Lock()
        self._job: tuple[str, threading.Thread, JobContext] | None = None

    def send(self, message: dict) -> None:
        with self._lock:
            self._out.write(encode(message))
            self._out.flush()

    def hello(self) -> None:
        self.send({"type": "hello", "protocol": PROTOCOL_VERSION, "backend": __version__, "pid": os.getpid(),
                   "commands": sorted(self._commands)})

    def run(self, in_stream) -> None:
        self.hello()
        for line in in_stream:
            if not line.strip():
                continue
            try:
                message = decode_client_message(line)
            except ProtocolError as exc:
                self.send({"type": "error", "job": None, "code": "bad_message", "message": str(exc)})
                continue
            if message["type"] == "shutdown":
                break
            self.handle(message)
        self.stop()

    def handle(self, message: dict) -> None:
        kind = message["type"]
        if kind == "ping":
            self.send({"type": "pong", "nonce": message.get("nonce")})
        elif kind == "cancel":
            job = self._job
            if job is not None and job[0] == message["job"]:
                job[2].cancel_event.set()
            else:
                self.send({"type": "error", "job": message["job"], "code": "unknown_job",
                           "message": f"no running job {message['job']!r} to cancel"})
        elif kind == "submit":
            self.submit(message)

    def submit(self, message: dict) -> None:
        job_id, command, args = message["job"], message["command"], message.get("args", {})
        if self._job is not None:
            self.send({"type": "error", "job": job_id, "code": "busy",
                       "message": f"job {self._job[0]!r} is still running; one job at a time"})
            return
        fn = self._commands.get(command)
        if fn is None:
            self.send({"type": "error", "job": job_id, "code": "unknown_command",
                       "message": f"unknown command {command!r}; this backend has {', '.join(sorted(self._commands))}"})
            return
        problem = _check_args(fn, args)
        if problem:
            self.send({"type": "error", "job": job_id, "code": "bad_input", "message": f"{command}: {problem}"})
            return
        ctx = JobContext(sink=lambda stage, step, total, text: self.send(
            {"type": "progress", "job": job_id, "stage": stage, "step": step, "total": total, "message": text}))
        thread = threading.Thread(target=self._run_job, args=(job_id, fn, args, ctx), name=f"job-{job_id}",
                                  daemon=True)
        self._job = (job_id, thread, ctx)
        self.send({"type": "accepted", "job": job_id})
        thread.start()

    def _run_job(self, job_id: str, fn, args: dict, ctx: JobContext) -> None:
        try:
            outputs = fn(ctx, **args)
            reply = {"type": "result", "job": job_id, "outputs": outputs}
        except BackendError as exc:
            reply = ({"type": "cancelled", "job": job_id} if exc.code == "cancelled" else
                     {"type": "error", "job": job_id, "code": exc.code, "message": exc.message})
        except MemoryError:
            reply = {"type": "error", "job": job_id, "code": "out_of_memory",
                     "message": "the backend ran out of memory; try a smaller mesh or fewer frames"}
        except Exception as exc:  # anything else is our bug: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            reply = {"type": "error", "job": job_id, "code": "internal", "message": f"{type(exc).__name__}: {exc}"}
        self._job = None
        self.send(reply)

    def stop(self, grace: float = 2.0) -> None:
        job = self._job
        if job is not None:
            job[2].cancel_event.set()
            job[1].join(grace)


def _check_args(fn, args: dict) -> str:
    params = inspect.signature(fn).parameters
    allowed = {name for name, p in params.items() if p.kind == p.KEYWORD_ONLY}
    required = {name for name in allowed if params[name].default is inspect.Parameter.empty}
    unknown = sorted(set(args) - allowed)
    missing = sorted(required - set(args))
    if unknown:
        return f"unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}"
    if missing:
        return f"missing argument(s) {', '.join(missing)}"
    return ""


def _watch_parent(parent_pid: int) -> None:
    """Exit if the parent dies without closing our stdin (e.g. SIGKILL on some platforms)."""
    import time

    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(3)


def serve() -> int:
    from .pipelines import COMMANDS

    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out = os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    service = Service(out, COMMANDS)
    service.run(sys.stdin)
    return 0
