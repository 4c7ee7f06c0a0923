"""What a running job can tell its caller and be told: progress out, cancellation in.

The same job functions run under the CLI (progress to the terminal) and under the service
(progress as protocol events), so they only ever see a JobContext.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable

from .errors import Cancelled

ProgressSink = Callable[[str, int, int, str], None]


class JobContext:
    def __init__(self, sink: ProgressSink | None = None, cancel_event: threading.Event | None = None):
        self._sink = sink
        self.cancel_event = cancel_event or threading.Event()

    def progress(self, stage: str, step: int, total: int, message: str = "") -> None:
        self.check_cancel()
        if self._sink is not None:
            self._sink(stage, step, total, message)

    def should_cancel(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()


def console_sink(stream=sys.stderr) -> ProgressSink:
    """Progress for people at a terminal: one line per event, with elapsed seconds."""
    start = time.monotonic()

    def sink(stage: str, step: int, total: int, message: str) -> None:
        frac = f"{step}/{total}" if total else ""
        print(f"[{time.monotonic() - start:6.1f}s] {stage:<9} {frac:>7} {message}", file=stream, flush=True)

    return sink


def bar_sink(stream=sys.stderr, width: int = 24) -> ProgressSink:
    """Progress as one bar that redraws itself on a terminal (a line per change elsewhere, e.g. a
    log file): `stage [#####-----] step/total message`, cut to the terminal's width."""
    import shutil

    tty = hasattr(stream, "isatty") and stream.isatty()
    shown = [None]

    def sink(stage: str, step: int, total: int, message: str) -> None:
        filled = int(width * step / total) if total else 0
        line = f"{stage} [{'#' * filled}{'-' * (width - filled)}] {step}/{total} {message}"
        if line == shown[0]:
            return
        if tty:
            columns = shutil.get_terminal_size((100, 20)).columns
            stream.write("\r\x1b[K" + line[:max(columns - 1, 20)] + ("\n" if total and step >= total else ""))
        else:
            stream.write(line + "\n")
        shown[0] = line
        stream.flush()

    return sink
