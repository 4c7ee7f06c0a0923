# SPDX-License-Identifier: GPL-3.0-or-later
"""Backend setup in the preferences: make the backend's Python environment with the right torch
build for this machine, show its log, and Check what the backend then sees.

Set Up Backend runs, one after another, logging everything to <user folder>/backend-setup.log:
  1. python -m venv <user folder>/backend-env          (Blender's own Python makes it)
  2. <env python> -m pip install torch==<pin> [--index-url <torch index>]
  3. <env python> -m pip install -r backend/requirements.txt
The torch pin is read from backend/requirements.txt; step 2 picks the build (`torch_index_url`):
CUDA wheels on Linux and Windows, PyPI's default wheels on macOS (they carry Metal / MPS), the CPU
wheels elsewhere, or what the Torch Build preference forces. Step 3 then finds torch satisfied
(a local build label like +cu126 matches the pin) and installs the rest from PyPI.

Check runs the backend's `check` job (backend/pipelines/check.py): torch version, device, GPU
name and free memory, and which modes fit (default / low VRAM / fit only).

This module is the pure part (which commands, the log, the Check's lines); the operators are in
operators/backend.py, the drawing in ui/preferences.py.
"""

import platform
import re
import sys
from pathlib import Path
from typing import List, Optional

from .backend_client import backend_source_root
from .config import user_dir

TORCH_INDEX = "https://download.pytorch.org/whl"
CUDA_INDEX = f"{TORCH_INDEX}/cu126"  # CUDA 12.6: drivers from 560 (Linux) / 560.94 (Windows)
CPU_INDEX = f"{TORCH_INDEX}/cpu"
LOG_TAIL_LINES = 6
GiB = 1 << 30
__all__ = ["backend_source_root", "log_path", "log_tail", "setup_commands", "summary_lines", "torch_index_url",
           "torch_requirement"]


# ---------------------------------------------------------------- pure: which commands


def torch_index_url(build: str = "AUTO", system: Optional[str] = None) -> Optional[str]:
    """The package index torch is installed from (None: PyPI's default), for `build` AUTO / CUDA / CPU
    on `system` (platform.system(): "Linux", "Windows", "Darwin", ...). ValueError where the
    asked-for build does not exist."""
    system = system or platform.system()
    build = build.upper()
    if build not in ("AUTO", "CUDA", "CPU"):
        raise ValueError(f"unknown torch build {build!r}: expected AUTO, CUDA or CPU")
    if system == "Darwin":
        if build == "CUDA":
            raise ValueError("there is no CUDA build of torch for macOS; use Automatic (Metal / MPS) or CPU")
        return None  # PyPI's macOS wheels are the MPS ones, and work on the CPU too
    if build == "CPU":
        return CPU_INDEX
    if build == "CUDA" or system in ("Linux", "Windows"):
        return CUDA_INDEX
    return CPU_INDEX


def torch_requirement(requirements: Path) -> str:
    """The torch line of backend/requirements.txt ("torch==2.13.0"); "torch" when it pins none."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if re.match(r"^torch\s*([=<>!~]|$)", line):
            return line.replace(" ", "")
    return "torch"


def setup_commands(env_dir: Path, env_python: Path, requirements: Path, build: str = "AUTO",
                   system: Optional[str] = None, base_python: Optional[str] = None) -> List[List[str]]:
    """The commands Set Up Backend runs, in order (see the module docstring)."""
    torch = [str(env_python), "-m", "pip", "install", torch_requirement(requirements)]
    index = torch_index_url(build, system)
    if index:
        torch += ["--index-url", index]
    return [[base_python or sys.executable, "-m", "venv", str(env_dir)],
            torch,
            [str(env_python), "-m", "pip", "install", "-r", str(requirements)]]


def log_path() -> Path:
    return user_dir() / "backend-setup.log"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> List[str]:
    """The last `lines` non-empty lines of the log (reads only its end)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-lines:]


def _gib(n) -> str:
    return "unknown" if n is None else f"{n / GiB:.1f} GiB"


def summary_lines(out: dict) -> List[str]:
    """The Check result as short lines for the preferences (and the report)."""
    device = out["device"].upper() if out["device"] != "cpu" else "CPU"
    lines = [f"torch {out['torch']} on {device}: {out['device_name']}"]
    if out.get("gpu_total_bytes") is not None:
        lines.append(f"GPU memory: {_gib(out.get('gpu_free_bytes'))} free of {_gib(out['gpu_total_bytes'])}")
    lines.append(f"{out['cpu_count']} CPUs, {_gib(out.get('ram_total_bytes'))} RAM")
    for m in out["modes"]:
        lines.append(f"{m['label']}: {'fits' if m['fits'] else 'does not fit'} ({m['reason']})")
    return lines
