# SPDX-License-Identifier: GPL-3.0-or-later
"""Backend setup's operators: Set Up Backend (make the backend's environment; the commands and
the log are backend_setup.py's) and Check (ask the backend what it can run here)."""

import platform
import subprocess
import time

import bpy

from .. import session
from ..backend_client import backend_source_root
from ..backend_setup import log_path, log_tail, setup_commands, summary_lines
from ..config import default_env_python, get_prefs
from .job import JobOperator, PreferencesBoard, redraw_preferences


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
        if session.busy() or session.setup_state["running"]:
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
        session.setup_state.update(running=False, step="", error="", done="")
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
        session.setup_state.update(running=True, step="starting")
        return True

    def _fail(self, message: str) -> bool:
        session.setup_state.update(running=False, error=message)
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
            session.setup_state.update(running=False, step="", done=f"Backend environment ready: {default_env_python()}")
            self.report({"INFO"}, session.setup_state["done"])
            return {"FINISHED"}
        command = self._steps.pop(0)
        session.setup_state["step"] = " ".join(command[1:4])
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


class ACTIONMESH_OT_check_backend(JobOperator, bpy.types.Operator):
    """Ask the backend what it can run here: torch, the device, GPU memory, and which modes fit"""

    bl_idname = "actionmesh.check_backend"
    bl_label = "Check"
    job_label = "Checking the backend"
    uses_job_dir = False
    needs_object_mode = False

    def _board(self, context):
        return PreferencesBoard(session.check_result, self.job_label)

    def _prepare(self, context, job_dir):
        return "check", {}

    def _apply(self, context, job) -> str:
        session.check_result["outputs"] = job.outputs
        return summary_lines(job.outputs)[0]


classes = (ACTIONMESH_OT_setup_backend, ACTIONMESH_OT_check_backend)
