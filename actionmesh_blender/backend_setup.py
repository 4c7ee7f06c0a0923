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
"""

import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import bpy

from . import session
from .backend_client import backend_source_root
from .models_ui import BackendJobOperator, redraw_preferences
from .preferences import ENV_PYTHON, default_env_python, get_prefs, user_dir

TORCH_INDEX = "https://download.pytorch.org/whl"
CUDA_INDEX = f"{TORCH_INDEX}/cu126"  # CUDA 12.6: drivers from 560 (Linux) / 560.94 (Windows)
CPU_INDEX = f"{TORCH_INDEX}/cpu"
LOG_TAIL_LINES = 6
GiB = 1 << 30

# The last Check's result and the setup's progress: runtime only, never saved.
check_result: dict = {"outputs": None, "error": "", "busy": "", "progress": 0.0}
setup_state: dict = {"running": False, "step": "", "error": "", "done": ""}


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


# ---------------------------------------------------------------- operators


class ACTIONMESH_OT_setup_backend(bpy.types.Operator):
    """Create the backend's Python environment in the extension's user folder and install torch (the build
    for this machine, or the Torch Build preference's) and the backend's requirements (downloads GBs with CUDA)"""

    bl_idname = "actionmesh.setup_backend"
    bl_label = "Set Up Backend"

    dry_run: bpy.props.BoolProperty(
        name="Dry Run", default=False, options={"HIDDEN", "SKIP_SAVE"},
        description="Write the commands into the log without running them")

    @classmethod
    def poll(cls, context):
        if session.busy() or setup_state["running"]:
            cls.poll_message_set("Busy: wait for the running job or setup")
            return False
        return True

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._begin(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.5, window=context.window)
        wm.modal_handler_add(self)
        self.report({"INFO"}, f"Setting up the ActionMesh backend; this takes several minutes (log: {self._log})")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        result = self._step()
        redraw_preferences(context)
        if result is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return result

    def execute(self, context):
        if not self._begin(context):
            return {"CANCELLED"}
        while (result := self._step()) is None:
            time.sleep(0.2)
        return result

    def _begin(self, context) -> bool:
        setup_state.update(running=False, step="", error="", done="")
        if not self.dry_run and not bpy.app.online_access:
            return self._fail("Online access is off (Preferences > System > Network); the backend setup downloads "
                              "packages")
        prefs = get_prefs(context)
        build = prefs.torch_build if prefs is not None else "AUTO"
        env_python = default_env_python()
        requirements = backend_source_root() / "backend" / "requirements.txt"
        try:
            self._steps = setup_commands(env_python.parent.parent, env_python, requirements, build)
        except (ValueError, OSError) as exc:
            return self._fail(str(exc))
        self._log = log_path()
        self._proc = None
        self._logfile = None
        with open(self._log, "w", encoding="utf-8") as log:
            log.write(f"# ActionMesh backend setup, {time.strftime('%Y-%m-%d %H:%M:%S')}: torch build {build} on "
                      f"{platform.system()} {platform.machine()}\n")
        setup_state.update(running=True, step="starting")
        return True

    def _fail(self, message: str) -> bool:
        setup_state.update(running=False, error=message)
        self.report({"ERROR"}, f"ActionMesh: {message}")
        return False

    def _step(self):
        """Advances the setup; None while it runs, else the operator's return set."""
        if self._proc is not None:
            code = self._proc.poll()
            if code is None:
                return None
            self._proc = None
            self._logfile.close()
            if code != 0:
                tail = " | ".join(log_tail(self._log, 3))
                self._fail(f"Backend setup failed (exit code {code}; log: {self._log}): {tail}")
                return {"CANCELLED"}
        if not self._steps:
            setup_state.update(running=False, step="", done=f"Backend environment ready: {default_env_python()}")
            self.report({"INFO"}, setup_state["done"])
            return {"FINISHED"}
        command = self._steps.pop(0)
        setup_state["step"] = " ".join(command[1:4])
        self._logfile = open(self._log, "a", encoding="utf-8")
        self._logfile.write("$ " + " ".join(command) + "\n")
        self._logfile.flush()
        if self.dry_run:
            self._logfile.close()
            return None
        try:
            self._proc = subprocess.Popen(command, stdout=self._logfile, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        except OSError as exc:
            self._logfile.close()
            self._fail(f"could not run {command[0]}: {exc}")
            return {"CANCELLED"}
        return None


class ACTIONMESH_OT_check_backend(BackendJobOperator, bpy.types.Operator):
    """Ask the backend what it can run here: torch, the device, GPU memory, and which modes fit"""

    bl_idname = "actionmesh.check_backend"
    bl_label = "Check"
    command = "check"
    busy_text = "Checking the backend"

    def _clear(self):
        check_result.update(error="")

    def _set_busy(self, text: str, progress: float) -> None:
        check_result.update(busy=text, progress=progress)

    def _record(self, **values) -> None:
        if "error" in values:
            check_result["error"] = values["error"]

    def _args(self, context) -> dict:
        return {}

    def _done(self, context, outputs: dict) -> str:
        check_result["outputs"] = outputs
        return summary_lines(outputs)[0]


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


def draw_backend_setup(layout, context) -> None:
    """The Backend box of the preferences."""
    import os

    prefs = get_prefs(context)
    box = layout.box()
    box.label(text="Backend", icon="CONSOLE")
    if prefs is not None:
        box.prop(prefs, "backend_python")
    if os.environ.get(ENV_PYTHON):
        box.label(text=f"Overridden by {ENV_PYTHON}={os.environ[ENV_PYTHON]}", icon="INFO")
    row = box.row()
    if prefs is not None:
        row.prop(prefs, "torch_build")
    row.operator("actionmesh.setup_backend", icon="CONSOLE")
    box.label(text=f"Environment: {default_env_python().parent.parent}")
    if setup_state["running"]:
        box.label(text=f"Running: {setup_state['step']}", icon="SORTTIME")
    if setup_state["error"]:
        box.label(text=setup_state["error"][:160], icon="ERROR")
    elif setup_state["done"]:
        box.label(text=setup_state["done"], icon="CHECKMARK")
    path = log_path()
    if path.exists():
        col = box.column(align=True)
        col.label(text=f"Log: {path}")
        for line in log_tail(path):  # a long line's end says most (the package, the error)
            col.label(text=line if len(line) <= 150 else "…" + line[-149:])
    row = box.row()
    row.operator("actionmesh.check_backend", icon="VIEWZOOM")
    if check_result["busy"]:
        row.label(text=f"{check_result['busy']} ({check_result['progress']:.0%})")
    if check_result["error"]:
        box.label(text=check_result["error"][:160], icon="ERROR")
    if check_result["outputs"]:
        col = box.column(align=True)
        for line in summary_lines(check_result["outputs"]):
            col.label(text=line[:150])


classes = (ACTIONMESH_OT_setup_backend, ACTIONMESH_OT_check_backend)
