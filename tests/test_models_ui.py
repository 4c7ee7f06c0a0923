"""The preferences' model manager and backend setup in real Blender (bpy 5.0 and 4.2 LTS), with the
extension installed from a zip and a real backend subprocess.

A `models tiny-random` folder as the Models Folder is all ready, an empty one all missing, a
truncated weights file partial, and Remove makes a model missing. Download refuses while Blender's
online access is off (with the message saying where to turn it on), and once it is on, fetches
from the local HTTP hub of test_model_store.py with the hub token, which must then appear in no
output, progress message, backend log or file of the add-on. Check reports torch and the CPU
with fit-only as the mode that fits. Set Up Backend's commands (which torch index for which
platform and override) are checked as a pure function and by a dry run that only logs them.
"""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from blender_harness import REPO, blender_env

pytest.importorskip("torch")
pytest.importorskip("huggingface_hub")

from test_model_store import SECRET, LocalHub  # noqa: E402

from backend.hub.registry import DINOV2, MODELS  # noqa: E402


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory):
    """The extension zip, staged and built in a private folder (as build.py does) so that builds of
    other test runs sharing build/ and dist/ cannot interfere."""
    import importlib.util

    root = tmp_path_factory.mktemp("extension")
    stage = root / "stage"
    spec = importlib.util.spec_from_file_location("actionmesh_build", REPO / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.stage_extension(stage)
    info = build.manifest()
    tool = build.blender_ext_tool()  # exits saying to run setup where the bpy wheel lacks it
    out = root / f"{info['id']}-{info['version']}.zip"
    proc = subprocess.run([sys.executable, str(tool), "build", "--source-dir", str(stage), "--output-filepath",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(out)


SCRIPT = '''
import importlib, json, os, sys, types
from pathlib import Path
import bpy

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.extensions.package_install_files(filepath={zip!r}, repo="user_default", enable_on_install=True)
PKG = "bl_ext.user_default.actionmesh"
prefs = bpy.context.preferences.addons[PKG].preferences
ui_prefs = importlib.import_module(PKG + ".ui.preferences")
bs = importlib.import_module(PKG + ".backend_setup")
session = importlib.import_module(PKG + ".session")
P = {paths!r}
out = {{}}


class Fake:
    """A stand-in UILayout that records what the draw functions put in it."""

    def __init__(self, log, parent=None):
        self.log, self.parent, self.enabled, self.active = log, parent, True, True

    def _child(self, *a, **k):
        return Fake(self.log, self)

    row = column = box = split = _child

    def _on(self):
        node = self
        while node is not None:
            if not node.enabled:
                return False
            node = node.parent
        return True

    def label(self, text="", icon="NONE", **k):
        self.log.append(["label", text])

    def prop(self, data, name, **k):
        self.log.append(["prop", name])

    def progress(self, factor=0.0, type="BAR", text=""):
        self.log.append(["progress", text])

    def operator(self, idname, text="", icon="NONE", emboss=True, **k):
        op = types.SimpleNamespace()
        self.log.append(["op", idname, self._on(), op, text])
        return op


def drawn():
    log = []
    ui_prefs.draw_backend_setup(Fake(log), bpy.context)
    ui_prefs.draw_model_manager(Fake(log), bpy.context)
    return log


def buttons(log, idname):
    return {{entry[3].name: entry[2] for entry in log if entry[0] == "op" and entry[1] == idname
            and getattr(entry[3], "name", "")}}


def refresh(folder):
    prefs.models_dir = folder
    assert not session.models_status["models"], "changing the folder forgets the old list"
    bpy.ops.actionmesh.models_refresh()
    return {{m["name"]: m["state"] for m in session.models_status["models"]}}


def error_of(call):
    try:
        call()
    except RuntimeError as exc:
        return str(exc)
    return ""


messages = []
session.listeners.append(lambda job: messages.append(job.message))

out["ready"] = refresh(P["ready"])
log = drawn()
out["ready_labels"] = [e[1] for e in log if e[0] == "label"] + [e[4] for e in log if e[0] == "op"]
out["download_enabled_offline"] = buttons(log, "actionmesh.models_download")
out["remove_enabled"] = buttons(log, "actionmesh.models_remove")
out["empty"] = refresh(P["empty"])
out["partial"] = refresh(P["partial"])
out["partial_problem"] = [m["problem"] for m in session.models_status["models"] if m["name"] == "triposg"][0]
bpy.ops.actionmesh.models_remove(name="actionmesh")
out["after_remove_entry"] = [m["state"] for m in session.models_status["models"] if m["name"] == "actionmesh"][0]
prefs.models_dir = ""
out["after_remove"] = refresh(P["partial"])
bpy.ops.actionmesh.models_verify(name="triposg")
out["verify_message"] = session.models_status["message"]

# Download: refused while online access is off, and without the licence accepted.
out["online_default"] = bpy.app.online_access
out["dl"] = refresh(P["download"])
out["offline_error"] = error_of(lambda: bpy.ops.actionmesh.models_download(name="dinov2"))
bpy.context.preferences.system.use_online_access = True
out["online_now"] = bpy.app.online_access
prefs.hub_token = {secret!r}
out["unaccepted_error"] = error_of(lambda: bpy.ops.actionmesh.models_download(name="dinov2"))
out["enabled_before_accept"] = buttons(drawn(), "actionmesh.models_download")
bpy.ops.actionmesh.models_accept_licence(name="dinov2", accept=True)
out["enabled_after_accept"] = buttons(drawn(), "actionmesh.models_download")
out["download_result"] = bpy.ops.actionmesh.models_download(name="dinov2") == {{"FINISHED"}}
out["download_message"] = session.models_status["message"]
out["after_download"] = {{m["name"]: m["state"] for m in session.models_status["models"]}}
out["enabled_after_download"] = buttons(drawn(), "actionmesh.models_download")
out["refreshed_after_download"] = refresh(P["download"])

# Check: torch, the device, the modes that fit.
bpy.ops.actionmesh.check_backend()
check = session.check_result["outputs"]
out["check"] = {{k: check[k] for k in ("torch", "device", "fitting", "recommended", "cpu_count")}}
out["check_needs"] = {{m["mode"]: m["needs_bytes"] for m in check["modes"]}}
out["check_lines"] = bs.summary_lines(check)
out["check_drawn"] = [e[1] for e in drawn() if e[0] == "label"]

# Set Up Backend: the commands, by platform and override, and a dry run that only logs them.
req = Path(bs.backend_source_root()) / "backend" / "requirements.txt"
out["torch_req"] = bs.torch_requirement(req)
out["index"] = {{f"{{s}}/{{b}}": bs.torch_index_url(b, s) for s in ("Linux", "Windows", "Darwin", "FreeBSD")
                for b in ("AUTO", "CUDA", "CPU") if not (s == "Darwin" and b == "CUDA")}}
out["mac_cuda_error"] = ""
try:
    bs.torch_index_url("CUDA", "Darwin")
except ValueError as exc:
    out["mac_cuda_error"] = str(exc)
out["commands"] = bs.setup_commands(Path("/env"), Path("/env/bin/python"), req, "AUTO", "Linux", "/usr/bin/python3")
prefs.torch_build = "CPU"
bpy.ops.actionmesh.setup_backend(dry_run=True)
out["setup_log"] = bs.log_path().read_text()
out["setup_drawn"] = [e[1] for e in drawn() if e[0] == "label"]

# The token: in no progress message, backend log, or file the add-on wrote.
out["messages"] = messages
out["backend_stderr"] = "\\n".join(session._backend.stderr_tail)
user = Path(os.environ["BLENDER_USER_RESOURCES"])
out["files_with_token"] = [str(p) for p in user.rglob("*") if p.is_file() and {secret!r}.encode() in p.read_bytes()]
out["user_files"] = len([p for p in user.rglob("*") if p.is_file()])
print("RESULT: " + json.dumps(out))
'''


def run_script(version, tmp_path, paths, env):
    script = tmp_path / f"models_ui_{version.replace('.', '_')}.py"
    script.write_text(textwrap.dedent(SCRIPT.format(zip=paths["zip"], paths=paths, secret=SECRET)))
    full = blender_env(version, env)
    for key in [k for k in full if k.startswith(("HF_", "HUGGINGFACE_"))]:
        del full[key]
    full.update({k: str(v) for k, v in env.items()})
    full["BLENDER_USER_RESOURCES"] = str(tmp_path / f"blender_user_{version}")
    proc = subprocess.run([sys.executable, str(script)], env=full, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=900)
    results = [line[len("RESULT: "):] for line in proc.stdout.splitlines() if line.startswith("RESULT: ")]
    assert proc.returncode == 0 and results, (proc.stdout[-6000:], proc.stderr[-6000:])
    return json.loads(results[-1]), proc.stdout + proc.stderr


def test_model_manager_and_setup_in_blender(bpy_version, addon_zip, tiny_models, tmp_path):
    ready = tiny_models[0]
    partial = tmp_path / "partial"
    shutil.copytree(ready, partial)
    weights = partial / "VAST-AI" / "TripoSG" / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4000])
    empty, download = tmp_path / "empty", tmp_path / "download"
    empty.mkdir()
    paths = dict(zip=addon_zip, ready=str(ready), empty=str(empty), partial=str(partial), download=str(download))
    repos = {DINOV2.repo_id: (DINOV2.revision, ready / DINOV2.org / DINOV2.repo_name)}
    with LocalHub(repos) as hub:
        env = dict(HF_ENDPOINT=hub.url, HF_HUB_CACHE=tmp_path / "hub_cache", CUDA_VISIBLE_DEVICES="")
        out, output = run_script(bpy_version, tmp_path, paths, env)
        assert set(hub.authorization) == {f"Bearer {SECRET}"}  # the token did reach the hub

    assert out["ready"] == {"actionmesh": "ready", "triposg": "ready", "dinov2": "ready", "rmbg": "missing",
                            "wan2.1-t2v-1.3b": "missing", "wan2.2-ti2v-5b": "missing"}
    labels = " | ".join(out["ready_labels"])
    for spec in MODELS.values():
        assert spec.repo_id in labels and spec.size_text() in labels and spec.licence.name in labels
    assert "Online access is off" in labels
    assert not any(out["download_enabled_offline"].values())
    assert out["remove_enabled"] == {"actionmesh": True, "triposg": True, "dinov2": True, "rmbg": False,
                                     "wan2.1-t2v-1.3b": False, "wan2.2-ti2v-5b": False}
    assert set(out["empty"].values()) == {"missing"}
    assert out["partial"]["triposg"] == "partial" and "truncated" in out["partial_problem"]
    assert out["after_remove_entry"] == "missing"
    assert out["after_remove"] == {"actionmesh": "missing", "triposg": "partial", "dinov2": "ready",
                                   "rmbg": "missing",
                                   "wan2.1-t2v-1.3b": "missing", "wan2.2-ti2v-5b": "missing"}
    assert "triposg partial" in out["verify_message"]

    assert out["online_default"] is False and out["online_now"] is True
    assert set(out["dl"].values()) == {"missing"}
    assert "Online access is off" in out["offline_error"] and "Preferences > System > Network" in out["offline_error"]
    assert "Accept the licence of facebook/dinov2-large" in out["unaccepted_error"]
    assert not out["enabled_before_accept"]["dinov2"] and out["enabled_after_accept"]["dinov2"]
    assert not out["enabled_after_accept"]["triposg"]  # its licence was not ticked
    assert out["download_result"] and "downloaded dinov2" in out["download_message"]
    assert out["after_download"]["dinov2"] == "ready" and out["refreshed_after_download"]["dinov2"] == "ready"
    assert not out["enabled_after_download"]["dinov2"]  # ready: nothing to download
    assert (download / "facebook" / "dinov2-large" / "model.safetensors").is_file()

    assert out["check"]["device"] == "cpu" and out["check"]["torch"].startswith("2.")
    assert out["check"]["fitting"] == ["fit_only"] and out["check"]["recommended"] == "fit_only"
    gib = 1 << 30
    assert 10 * gib < out["check_needs"]["default"] < 20 * gib and 5 * gib < out["check_needs"]["low_vram"] <= 8 * gib
    assert out["check_lines"][0].startswith(f"torch {out['check']['torch']} on CPU")
    assert any(line.startswith("Fit only: fits") for line in out["check_drawn"])
    assert any(line.startswith("Default: does not fit") for line in out["check_drawn"])

    cuda, cpu = "https://download.pytorch.org/whl/cu126", "https://download.pytorch.org/whl/cpu"
    assert out["index"] == {"Linux/AUTO": cuda, "Linux/CUDA": cuda, "Linux/CPU": cpu,
                            "Windows/AUTO": cuda, "Windows/CUDA": cuda, "Windows/CPU": cpu,
                            "Darwin/AUTO": None, "Darwin/CPU": None,
                            "FreeBSD/AUTO": cpu, "FreeBSD/CUDA": cuda, "FreeBSD/CPU": cpu}
    assert "macOS" in out["mac_cuda_error"]
    pin = next(line for line in (REPO / "backend" / "requirements.txt").read_text().splitlines()
               if line.startswith("torch"))
    assert out["torch_req"] == pin
    assert out["commands"][0] == ["/usr/bin/python3", "-m", "venv", "/env"]
    assert out["commands"][1] == ["/env/bin/python", "-m", "pip", "install", pin, "--index-url", cuda]
    assert out["commands"][2][:5] == ["/env/bin/python", "-m", "pip", "install", "-r"]
    assert f"pip install {pin} --index-url {cpu}" in out["setup_log"] and "torch build CPU" in out["setup_log"]
    assert any(line.startswith("Log: ") for line in out["setup_drawn"])
    assert any(f"--index-url {cpu}" in line for line in out["setup_drawn"])  # the log's last lines

    assert any("dinov2" in m for m in out["messages"])
    assert SECRET not in json.dumps(out["messages"]) and SECRET not in out["backend_stderr"]
    assert out["files_with_token"] == [] and out["user_files"] > 0
    assert SECRET not in output
