"""What every benchmark's command line does the same way: comma-separated choices checked against
what exists, timing a call, and the figures written as JSON beside the printed table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Sequence


def choices(parser, **given: "tuple[str, Sequence[str]]") -> Dict[str, List[str]]:
    """{name: (comma-separated text, allowed)} -> {name: [chosen, ...]}; unknown entries (of any
    list) end the program through parser.error, naming them all at once."""
    chosen = {name: [x for x in text.split(",") if x] for name, (text, _) in given.items()}
    bad = [x for name, (_, allowed) in given.items() for x in chosen[name] if x not in allowed]
    if bad:
        parser.error(f"unknown: {', '.join(bad)}")
    return chosen


def timed(fn, *args, **kwargs):
    """(fn's result, the seconds it took)."""
    started = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - started


def write_json(path, figures) -> None:
    """The figures as JSON at `path` (its folder made if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
