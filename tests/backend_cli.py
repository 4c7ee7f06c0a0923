"""`python -m backend ...` in a subprocess, as a user runs it from a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_backend(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m backend ARGS`, with none of the caller's HF_* variables leaking in (every test
    says where its models are)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
