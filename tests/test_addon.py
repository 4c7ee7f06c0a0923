"""The add-on in real Blender (bpy 5.0 and 4.2 LTS), installed from the built extension zip,
driving a real backend subprocess on real files."""

import subprocess
import sys

import numpy as np
import trimesh

from blender_harness import REPO, run_blender
from sequences import bend, make_sequence

PRELUDE = '''
import importlib, json, os, signal, sys
import bpy
import numpy as np

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.extensions.package_install_files(filepath={zip!r}, repo="user_default", enable_on_install=True)
PKG = "bl_ext.user_default.actionmesh"
session = importlib.import_module(PKG + ".session")
assert PKG in bpy.context.preferences.addons, "extension not enabled"

def result(**kw):
    print("RESULT: " + json.dumps(kw))

def generated_offsets(obj):
    blocks = obj.data.shape_keys.key_blocks
    basis = np.empty(len(obj.data.vertices) * 3, np.float32)
    blocks["Basis"].points.foreach_get("co", basis)
    out = []
    for block in blocks:
        if block.name.startswith("AM_"):
            co = np.empty_like(basis)
            block.points.foreach_get("co", co)
            out.append((co - basis).reshape(-1, 3))
    return np.stack(out)

def snapshot(obj):
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    keys = obj.data.shape_keys
    return {{"co": co.tolist(), "keys": [k.name for k in keys.key_blocks] if keys else [],
            "frame_end": bpy.context.scene.frame_end, "actions": len(bpy.data.actions)}}

def import_obj(path):
    bpy.ops.wm.obj_import(filepath=path)
    obj = bpy.context.selected_objects[0]
    bpy.context.view_layer.objects.active = obj
    return obj
'''


def cli_offsets(seq, out):
    proc = subprocess.run([sys.executable, "-m", "backend", "register", "--reference", str(seq["reference"]),
                           "--sequence", str(seq["sequence"]), "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return np.load(out / "animation.npz")["offsets"]


def test_operator_matches_cli_and_one_undo_removes_it(bpy_version, extension_zip, tmp_path):
    seq = make_sequence(tmp_path, n_frames=5)
    expected = cli_offsets(seq, tmp_path / "cli")
    script = PRELUDE.format(zip=extension_zip) + f'''
obj = import_obj({str(seq["reference"])!r})
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 10, 12
before = snapshot(obj)
bpy.ops.ed.undo_push(message="before ActionMesh")
# EXEC_DEFAULT with undo=True: the undo push a click in the UI gets.
status = bpy.ops.actionmesh.animate_from_sequence("EXEC_DEFAULT", True, sequence={str(seq["sequence"])!r},
                                                  space="LOCAL")
obj = bpy.data.objects[obj.name]
offsets = generated_offsets(obj)
names = [k.name for k in obj.data.shape_keys.key_blocks]
after_end = scene.frame_end
# The animation is live: the evaluated mesh at frame 10 + t is the reference plus offsets[t].
live = []
for t in range(len(offsets)):
    scene.frame_set(10 + t)
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    co = np.empty(len(ev.vertices) * 3, np.float32)
    ev.vertices.foreach_get("co", co)
    live.append(co.reshape(-1, 3))
base = np.array(before["co"], np.float32).reshape(-1, 3)
live_err = float(np.abs(np.stack(live) - (base + offsets)).max())
name = obj.name
bpy.ops.ed.undo()
obj = bpy.data.objects[name]
result(status=sorted(status), offsets=offsets.tolist(), names=names, frame_end=after_end, live_err=live_err,
       state=bpy.context.window_manager.actionmesh_job.status, undone=snapshot(obj), before=before)
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    assert r["status"] == ["FINISHED"], r["state"]
    assert r["names"] == ["Basis"] + [f"AM_{t:03d}" for t in range(5)]
    assert r["frame_end"] == 14
    np.testing.assert_allclose(np.array(r["offsets"]), expected, atol=2e-4)
    assert r["live_err"] < 1e-5
    assert r["undone"] == r["before"], "one undo must remove the whole result"


def test_panda_glb_with_y_up_sequence(bpy_version, extension_zip, tmp_path, shared_examples, learned_weights):
    panda = shared_examples / "panda" / "panda.glb"
    mesh = trimesh.load(panda, process=False, force="mesh")
    seq_dir = tmp_path / "panda_seq"
    seq_dir.mkdir()
    frames = [bend(np.asarray(mesh.vertices), t) for t in np.linspace(0, 1, 4)]
    for i, verts in enumerate(frames):
        # Frames re-meshed by subdivision: another topology over the same moving surface.
        v, f = trimesh.remesh.subdivide(verts, mesh.faces)
        trimesh.Trimesh(v, f, process=False).export(seq_dir / f"panda_{i:02d}.glb")
    np.save(tmp_path / "targets.npy", np.concatenate([f[None] for f in frames]))
    weights = learned_weights
    script = PRELUDE.format(zip=extension_zip) + f'''
bpy.ops.import_scene.gltf(filepath={str(panda)!r})
obj = max((o for o in bpy.context.scene.objects if o.type == "MESH"), key=lambda o: len(o.data.vertices))
bpy.context.view_layer.objects.active = obj
uv_layers, materials = len(obj.data.uv_layers), [m.name for m in obj.data.materials]
prefs = bpy.context.preferences.addons[PKG].preferences
methods_run = []
# The operator follows the add-on preference unless told otherwise; the Stage II Weights preference
# says where the learned weights are. The last run (the preference's default, "learned-optimize",
# with the learned weights) is the one checked below.
both = "learned-optimize"
for pref, explicit, weights_dir in ((both, "optimize", ""), ("optimize", None, ""), (both, None, ""),
                                    (both, "learned", {str(weights)!r}), (both, None, {str(weights)!r})):
    prefs.method, prefs.weights_dir = pref, weights_dir
    kw = {{"method": explicit}} if explicit else {{}}
    status = bpy.ops.actionmesh.animate_from_sequence(sequence={str(seq_dir)!r}, space="WORLD_Y_UP", **kw)
    methods_run.append(session.current_job.outputs.get("method"))
scene = bpy.context.scene
to_y_up = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64)
frames_world = []
for t in range(4):
    scene.frame_set(scene.frame_start + t)
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    world = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
    frames_world.append((world @ to_y_up.T).tolist())
result(status=sorted(status), error=bpy.context.window_manager.actionmesh_job.last_error,
       methods=methods_run, keys=[k.name for k in obj.data.shape_keys.key_blocks], frames=frames_world, uv_layers=[uv_layers, len(obj.data.uv_layers)],
       materials=[materials, [m.name for m in obj.data.materials]])
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    assert r["status"] == ["FINISHED"], r["error"]
    # An explicit method wins over the preference; without the Stage II weights "learned-optimize"
    # runs "optimize" (the backend says so in a warning); with the weights folder set, both run.
    stage2 = (REPO / "backend" / "weights" / "tiny" / "stage2" / "model.safetensors").is_file()
    both = "learned-optimize"
    assert r["methods"] == ["optimize", "optimize", both if stage2 else "optimize", "learned", both]
    assert r["keys"] == ["Basis"] + [f"AM_{t:03d}" for t in range(4)], "re-runs replace the AM_ keys"
    assert r["uv_layers"][0] == r["uv_layers"][1] >= 1 and r["materials"][0] == r["materials"][1]
    from scipy.spatial import cKDTree

    targets = np.load(tmp_path / "targets.npy")
    diag = np.linalg.norm(np.ptp(targets[0], axis=0))
    rest = np.array(r["frames"][0])
    for t in range(1, 4):
        surface = trimesh.sample.sample_surface(trimesh.Trimesh(targets[t], mesh.faces, process=False), 200_000,
                                                seed=t)[0]
        tree = cKDTree(surface)
        moved = tree.query(np.array(r["frames"][t]))[0].mean() / diag
        still = tree.query(rest)[0].mean() / diag
        assert moved < 0.004 and moved < 0.3 * still, (t, moved, still)


def test_cancel_kill_and_bad_input_leave_scene_unchanged(bpy_version, extension_zip, tmp_path):
    seq = make_sequence(tmp_path, n_frames=8)
    bad = {}
    for name in ("empty", "corrupt", "single", "nan"):
        bad[name] = tmp_path / name
        bad[name].mkdir()
    (bad["corrupt"] / "a.ply").write_bytes((seq["sequence"] / "frame_000.ply").read_bytes())
    (bad["corrupt"] / "b.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    (bad["single"] / "a.ply").write_bytes((seq["sequence"] / "frame_000.ply").read_bytes())
    (bad["nan"] / "a.ply").write_bytes((seq["sequence"] / "frame_000.ply").read_bytes())
    (bad["nan"] / "b.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    bad_dirs = {k: str(v) for k, v in bad.items()}
    script = PRELUDE.format(zip=extension_zip) + f'''
obj = import_obj({str(seq["reference"])!r})
before = snapshot(obj)
state = bpy.context.window_manager.actionmesh_job
report = {{}}

def run(directory, listener=None):
    if listener:
        session.listeners.append(listener)
    try:
        status = bpy.ops.actionmesh.animate_from_sequence(sequence=directory)
    except RuntimeError as exc:  # an operator that reports an error raises when called from Python
        status = {{"ERROR"}}
        assert state.last_error in str(exc)
    finally:
        session.listeners.clear()
    return sorted(status), state.last_error, snapshot(bpy.data.objects[obj.name]) == before

def cancel_at_register(job):
    if job.stage == "register":
        job.cancel()
report["cancel"] = run({str(seq["sequence"])!r}, cancel_at_register)

pids = []
def kill_at_register(job):
    if job.stage == "register" and not pids:
        pids.append(job.backend.pid)
        os.kill(job.backend.pid, signal.SIGKILL)
report["kill"] = run({str(seq["sequence"])!r}, kill_at_register)
for name, path in {bad_dirs!r}.items():
    report[name] = run(path)
report["after_restart"] = run({str(seq["sequence"])!r})
report["restarted"] = session.backend_pid() not in (None, pids[0])
pid = session.backend_pid()
bpy.ops.preferences.addon_disable(module=PKG)
import time
time.sleep(0.5)
try:
    os.kill(pid, 0)
    alive = True
except ProcessLookupError:
    alive = False
report["backend_alive_after_disable"] = alive
result(**report)
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    assert r["cancel"] == [["CANCELLED"], "", True]
    assert r["kill"][0] == ["ERROR"] and "stopped unexpectedly" in r["kill"][1] and r["kill"][2]
    assert "SIGKILL" in r["kill"][1]
    assert r["empty"][0] == ["ERROR"] and "no mesh files" in r["empty"][1] and r["empty"][2]
    assert "b.ply" in r["corrupt"][1] and r["corrupt"][2]
    assert "only 1 frame" in r["single"][1] and r["single"][2]
    assert "NaN" in r["nan"][1] and r["nan"][2]
    assert r["after_restart"][0] == ["FINISHED"] and r["restarted"]
    assert r["backend_alive_after_disable"] is False


def test_cli_glb_imports_as_shape_keys_and_setup_needs_online_access(bpy_version, extension_zip, tmp_path):
    seq = make_sequence(tmp_path, n_frames=3)
    expected = cli_offsets(seq, tmp_path / "cli")
    script = PRELUDE.format(zip=extension_zip) + f'''
bpy.ops.import_scene.gltf(filepath={str(tmp_path / "cli" / "animated.glb")!r})
obj = [o for o in bpy.context.scene.objects if o.type == "MESH"][0]
names = [k.name for k in obj.data.shape_keys.key_blocks]
bpy.context.preferences.system.use_online_access = False
try:
    setup = str(bpy.ops.actionmesh.setup_backend())
except RuntimeError as exc:
    setup = str(exc)
result(names=names, vertices=len(obj.data.vertices), setup=setup, online=bpy.app.online_access)
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    assert r["names"][1:] == ["AM_000", "AM_001", "AM_002"] and r["vertices"] >= expected.shape[1]
    assert r["online"] is False and "Online access is off" in r["setup"]


def test_panda_against_inward_wound_marching_cubes_frames(bpy_version, extension_zip, tmp_path, shared_examples):
    """Issue 9's failing case in Blender: per-frame meshes re-made by marching cubes and wound
    inward. The default method must follow the motion (it used to turn frame 0 by ~20 degrees)
    and the info line must say how well the frames fit."""
    from backend.bench.register import REMESH_RESOLUTION
    from backend.synthetic.deforming import bend_hinge_squash
    from backend.synthetic.remesh import set_winding, voxel_remesh

    panda = shared_examples / "panda" / "panda.glb"
    mesh = trimesh.load(panda, process=False, force="mesh")
    n_frames = 6
    seq_dir = tmp_path / "mc_frames"
    seq_dir.mkdir()
    for t, pose in enumerate(bend_hinge_squash(np.asarray(mesh.vertices), n_frames, seed=0)):
        v, f = voxel_remesh(pose, mesh.faces, REMESH_RESOLUTION["panda"], seed=t)
        trimesh.Trimesh(v, set_winding(v, f, "inward"), process=False).export(seq_dir / f"panda_{t:02d}.ply")
    script = PRELUDE.format(zip=extension_zip) + f'''
bpy.ops.import_scene.gltf(filepath={str(panda)!r})
obj = max((o for o in bpy.context.scene.objects if o.type == "MESH"), key=lambda o: len(o.data.vertices))
bpy.context.view_layer.objects.active = obj
status = bpy.ops.actionmesh.animate_from_sequence(sequence={str(seq_dir)!r}, space="WORLD_Y_UP")
state = bpy.context.window_manager.actionmesh_job
scene = bpy.context.scene
to_y_up = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64)
frames_world = []
for t in range(-1, {n_frames}):
    scene.frame_set(scene.frame_start + t)  # t = -1: before the animation, the rest pose
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    frames_world.append(((co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]) @ to_y_up.T).tolist())
result(status=sorted(status), error=state.last_error, line=state.status, method=session.current_job.outputs.get("method"),
       frames=frames_world)
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    assert r["status"] == ["FINISHED"], r["error"]
    assert r["method"] == "learned-optimize" and "surface fit" in r["line"], r["line"]
    frames = np.array(r["frames"])
    rest, moved = frames[0], frames[1:]
    # The motion is a map of space over the mesh's box, so the truth of Blender's own vertices
    # (however its glTF importer split them) is the same map applied to them.
    truth = bend_hinge_squash(rest, n_frames, seed=0)
    diag = np.linalg.norm(np.ptp(rest, axis=0))
    err = np.linalg.norm(moved - truth, axis=-1).mean() / diag
    still = np.linalg.norm(rest[None] - truth, axis=-1).mean() / diag
    print(f"blender {bpy_version}: vertex error {err:.4f} vs still {still:.4f}")
    # Measured 0.0340 vs 0.0535 (0.64x, 6 frames, Blender 5.0); the bug reported 3x standing still.
    assert err < 0.75 * still, (err, still)


def test_the_extension_carries_what_users_run_and_the_cli_says_where_the_rest_is(extension_zip, tmp_path):
    """No benchmarks or training in the zip; its backend still runs `plan` (the memory plan its GPU
    check reads) and, asked for a benchmark, says where the benchmarks are."""
    import zipfile

    with zipfile.ZipFile(extension_zip) as z:
        names = z.namelist()
        z.extractall(tmp_path / "ext")
    assert any(n.startswith("backend/fitting/") for n in names) and "backend/pipelines/plan.py" in names
    assert not [n for n in names if n.startswith(("backend/bench/", "backend/train/"))]
    run = [sys.executable, "-m", "backend"]
    proc = subprocess.run(run + ["bench", "fit", "--set", "tuning"], cwd=tmp_path / "ext", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "developer tools" in proc.stderr and "build.py setup" in proc.stderr, proc.stderr
    proc = subprocess.run(run + ["plan", "--help"], cwd=tmp_path / "ext", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--low-vram" in proc.stdout, proc.stderr
