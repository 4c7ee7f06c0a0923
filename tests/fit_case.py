"""A small rendered fitting case for tests: panda.glb under a known motion, rendered with Cycles by
tools/render_fit_cases.py (few frames, small, few samples), with its truth.npz and camera.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from blender_harness import missing_data

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "render_fit_cases.py"
PANDA = REPO.parent / "shared" / "examples" / "panda" / "panda.glb"


def render_case(root: Path, case: str = "panda-bend", frames: int = 6, size: int = 128) -> Path:
    """Renders `case` (a name or spec of backend/bench/fit_sets.py) under `root` and returns its
    folder; skips where the shared data is absent."""
    from backend.bench.fit_sets import parse_spec

    if not PANDA.is_file():
        missing_data(f"needs the shared example data at {PANDA.parent.parent} (present in CI, absent in a user's clone)")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(root), "--cases", case, "--frames", str(frames),
                           "--size", str(size), "--samples", "4", "--no-denoise", "--panda", str(PANDA)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root / parse_spec(case).folder


def case_mesh(case_dir: Path) -> Path:
    mesh = Path(json.loads((case_dir / "case.json").read_text())["mesh"])
    return mesh if mesh.is_absolute() else case_dir / mesh
