"""The batch's progress: rows done / failed / running / waiting and the time left, as one message
(the terminal's bar and the service's progress events carry the same)."""

from __future__ import annotations

import time
from typing import Optional


class BatchProgress:
    def __init__(self, total: int, skipped: int = 0):
        self.total, self.skipped = total, skipped
        self.done = self.failed = self.running = 0
        self.started = time.monotonic()

    @property
    def finished(self) -> int:
        """Rows with an outcome: done or failed here, or skipped (done before)."""
        return self.done + self.failed + self.skipped

    @property
    def waiting(self) -> int:
        return self.total - self.finished - self.running

    def seconds_left(self) -> Optional[float]:
        """From the rate rows finished at in this run (None until one has)."""
        ran = self.done + self.failed
        if ran == 0:
            return None
        rate = ran / max(time.monotonic() - self.started, 1e-6)
        return (self.total - self.finished) / rate

    def message(self) -> str:
        parts = [f"{self.done} done", f"{self.failed} failed", f"{self.running} running", f"{self.waiting} waiting"]
        text = ", ".join(parts) + f" of {self.total}"
        if self.skipped:
            text += f" ({self.skipped} skipped: done before)"
        left = self.seconds_left()
        if self.finished < self.total:
            text += "; time left unknown yet" if left is None else f"; about {duration(left)} left"
        return text

    def state(self) -> tuple:
        """What changes the message (the time left in 10 s steps)."""
        left = self.seconds_left()
        return self.done, self.failed, self.running, None if left is None else round(left / 10)


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds / 10.0) * 10)) if seconds >= 60 else max(1, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {seconds} s" if seconds else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
