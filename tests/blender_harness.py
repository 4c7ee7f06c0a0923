"""Run a script in real Blender (the bpy module) in a fresh subprocess, once per Blender version.

Each Blender test runs in its own process: bpy keeps global state, the add-on starts its own
backend subprocess, and a crash must fail one test, not the session. A script reports back by
printing one line `RESULT: <json>`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

def missing_data(reason: str):
    """A test's data (../shared, the MD2 characters) is absent: skipped with `reason` in a user's
    clone, failed under CI (CI is set there), where the data must be."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have it")
    pytest.skip(reason)


# "5.0" is the bpy installed in the venv; "4.2" is a --target install that shadows it on PYTHONPATH.
BPY_VERSIONS = {"5.0": None, "4.2": REPO / ".venv" / "bpy-4.2"}


def blender_env(version: str, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    shadow = BPY_VERSIONS[version]
    paths = [str(REPO)]
    if shadow is not None:
        if not shadow.is_dir():
            raise RuntimeError(f"bpy {version} is not installed at {shadow}: run `python3 build.py setup`")
        paths.insert(0, str(shadow))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("ACTIONMESH_BACKEND_PYTHON", sys.executable)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def run_blender(script: str, version: str, *, tmp_path: Path, env: dict | None = None,
                timeout: float = 600) -> dict:
    """Run `script` under bpy `version`; return the JSON it printed after `RESULT: `."""
    path = tmp_path / f"blender_script_{version.replace('.', '_')}.py"
    path.write_text(textwrap.dedent(script))
    full_env = blender_env(version, env)
    # Keep Blender's user config (installed extensions, prefs) inside the test's temp dir.
    full_env.setdefault("BLENDER_USER_RESOURCES", str(tmp_path / f"blender_user_{version}"))
    proc = subprocess.run([sys.executable, str(path)], env=full_env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=timeout)
    results = [line[len("RESULT: "):] for line in proc.stdout.splitlines() if line.startswith("RESULT: ")]
    if proc.returncode != 0 or not results:
        raise AssertionError(
            f"Blender {version} script failed (exit {proc.returncode})\n--- stdout ---\n"
            f"{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
    return json.loads(results[-1])
