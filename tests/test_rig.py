"""`python -m backend rig` (issue 22): a rig made from a real character's animation, a given rig
animated by another clip, the skinned glTF (read back by our own reading of the spec and by
Blender's importer), and bad input refused with its reason."""

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from blender_harness import REPO, missing_data, run_blender

N_FRAMES = 16


def run_backend(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=str(REPO), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sydney(tmp_path_factory):
    """Sydney (MD2) running and attacking, both as animations of the run's first pose."""
    from backend.io.mesh import write_animation_npz
    from backend.synthetic.md2 import animation, md2_folder, play, read_md2

    folder = md2_folder()
    if folder is None:
        missing_data("needs the MD2 characters (`python3 build.py setup` unpacks them)")
    keyframes, triangles, names = read_md2(folder / "sydney.md2")
    run = play(keyframes, animation(names, "run"), N_FRAMES)
    attack = play(keyframes, animation(names, "attack"), N_FRAMES)
    root = tmp_path_factory.mktemp("sydney")
    write_animation_npz(root / "run.npz", run[0], triangles, run - run[0], 24.0)
    write_animation_npz(root / "attack.npz", run[0], triangles, attack - run[0], 24.0)
    rest = run[0].astype(np.float32).astype(np.float64)  # as the files hold it
    return {"root": root, "rest": rest, "faces": triangles, "run": run, "attack": attack,
            "diag": float(np.linalg.norm(rest.max(axis=0) - rest.min(axis=0)))}


@pytest.fixture(scope="module")
def run_rig(sydney):
    out = sydney["root"] / "rig_run"
    proc = run_backend("rig", "--animation", sydney["root"] / "run.npz", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), out


def _posed_from_rig_npz(path):
    """LBS from rig.npz's own arrays, written out here from its format's description."""
    with np.load(path, allow_pickle=False) as d:
        rest, weights, bind, parents, local = (d["rest_vertices"].astype(np.float64), d["weights"].astype(np.float64),
                                               d["bind"], d["parents"], d["local"])
    globals_ = local.copy()
    done = [p < 0 for p in parents]
    while not all(done):
        for b, p in enumerate(parents):
            if not done[b] and done[p]:
                globals_[:, b] = globals_[:, p] @ local[:, b]
                done[b] = True
    skinning = globals_ @ np.linalg.inv(bind)[None]
    homo = np.concatenate([rest, np.ones((len(rest), 1))], axis=1)
    return np.einsum("vb,tbij,vj->tvi", weights, skinning[:, :, :3, :], homo), weights, parents


def _error(posed, truth, diag):
    return np.linalg.norm(posed - truth, axis=-1).mean(axis=1) / diag


def test_a_new_rig_reproduces_the_characters_run(sydney, run_rig):
    result, out = run_rig
    assert result["mode"] == "new rig" and result["frames"] == N_FRAMES and result["vertices"] == 342
    assert 1 < result["bones"] <= 32 and result["influences"] <= 4
    posed, weights, parents = _posed_from_rig_npz(out / "rig.npz")
    # Weights: non-negative, summing to 1, at most 4 a vertex; the bones one tree with one root.
    assert (weights >= 0).all() and np.allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert (weights > 0).sum(axis=1).max() <= 4
    assert (parents < 0).sum() == 1
    # Against the truth. Measured 2026-12-03 (pytest tests/test_rig.py -s): 16 bones, mean 0.173 %
    # of the diagonal, worst frame 0.25 %; leaving the mesh still is 10.4 %. Bounds: 0.4 % and 0.6 %.
    error = _error(posed, sydney["run"], sydney["diag"])
    print(f"new rig: {result['bones']} bones, mean {100 * error.mean():.3f}%, worst frame {100 * error.max():.3f}%")
    assert error.mean() < 0.004 and error.max() < 0.006, error
    assert abs(result["error_mean"] - error.mean()) < 1e-4  # the report says what the file does
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "actionmesh-rig" and len(report["error_per_frame"]) == N_FRAMES


def _read_glb(path):
    data = path.read_bytes()
    magic, _, _ = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67
    n_json = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20:20 + n_json])
    body = data[20 + n_json + 8:]

    def accessor(i):
        a = gltf["accessors"][i]
        view = gltf["bufferViews"][a["bufferView"]]
        dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}[a["componentType"]]
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[a["type"]]
        raw = np.frombuffer(body, dtype, a["count"] * width, view["byteOffset"])
        return raw.reshape(a["count"], width) if width > 1 else raw

    return gltf, accessor


def test_the_skinned_gltf_plays_the_rigs_motion(sydney, run_rig):
    """Read by the spec (node TRS animated per joint, skin joints and inverse bind matrices,
    JOINTS_0/WEIGHTS_0), the file poses the mesh as the animation does."""
    from scipy.spatial.transform import Rotation

    result, out = run_rig
    gltf, accessor = _read_glb(out / "rigged.glb")
    skin = gltf["skins"][0]
    joints = skin["joints"]
    assert len(joints) == result["bones"]
    prim = gltf["meshes"][0]["primitives"][0]
    positions = accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    j0, w0 = accessor(prim["attributes"]["JOINTS_0"]), accessor(prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
    assert np.allclose(w0.sum(axis=1), 1.0, atol=1e-5)
    ibm = accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
    parent = {c: n for n, node in enumerate(gltf["nodes"]) for c in node.get("children", [])}
    anim = gltf["animations"][0]
    tracks = {}
    for ch in anim["channels"]:
        sampler = anim["samplers"][ch["sampler"]]
        tracks[(ch["target"]["node"], ch["target"]["path"])] = accessor(sampler["output"]).astype(np.float64)
    n_keys = len(accessor(anim["samplers"][0]["input"]))
    assert n_keys == N_FRAMES and len(anim["channels"]) == 2 * len(joints)
    posed = []
    for t in range(n_keys):
        local = {}
        for node in joints:
            m = np.eye(4)
            m[:3, :3] = Rotation.from_quat(tracks[(node, "rotation")][t]).as_matrix()
            m[:3, 3] = tracks[(node, "translation")][t]
            local[node] = m

        def world(node):
            return world(parent[node]) @ local[node] if node in parent else local[node]

        jm = np.stack([world(node) @ ibm[i] for i, node in enumerate(joints)])
        homo = np.concatenate([positions, np.ones((len(positions), 1))], axis=1)
        moved = np.einsum("vkij,vj->vki", jm[j0.astype(np.int64)][:, :, :3, :], homo)
        posed.append((moved * w0[:, :, None]).sum(axis=1))
    error = _error(np.stack(posed), sydney["run"], sydney["diag"])
    assert error.mean() < 0.004, error


def test_a_given_rig_follows_another_clip(sydney, run_rig, tmp_path):
    """Re-targeting: the run's rig (weights and joints held) animated by the attack."""
    _, rig_dir = run_rig
    proc = run_backend("rig", "--animation", sydney["root"] / "attack.npz", "--rig", rig_dir / "rig.npz",
                       "--out", tmp_path / "attack", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["mode"] == "given rig"
    posed, weights, parents = _posed_from_rig_npz(tmp_path / "attack" / "rig.npz")
    with np.load(rig_dir / "rig.npz") as given:
        assert np.allclose(weights, given["weights"], atol=1e-6) and np.array_equal(parents, given["parents"])
    # Measured 2026-12-03: mean 0.362 % (worst frame 0.48 %) against 14.7 % still; the bar
    # is 2 %. Bound: 1 %.
    error = _error(posed, sydney["attack"], sydney["diag"])
    print(f"retarget: mean {100 * error.mean():.3f}%, worst frame {100 * error.max():.3f}%")
    assert error.mean() < 0.01, error


def test_bad_input_is_refused_with_its_reason(sydney, run_rig, tmp_path):
    from backend.io.mesh import write_animation_npz

    rest, faces = sydney["rest"], sydney["faces"]
    one = tmp_path / "one.npz"
    write_animation_npz(one, rest, faces, np.zeros((1,) + rest.shape), 24.0)
    nan = tmp_path / "nan.npz"
    offsets = sydney["run"] - sydney["run"][0]
    broken = offsets.copy()
    broken[3, 7, 1] = np.nan
    write_animation_npz(nan, rest, faces, broken, 24.0)
    other = tmp_path / "other.npz"
    write_animation_npz(other, rest[:-2], faces[(faces < len(rest) - 2).all(axis=1)], offsets[:, :-2], 24.0)
    big = tmp_path / "big.npz"  # past the vertex limit: refused before any work, with what to do
    grid = np.random.default_rng(0).normal(size=(200_001, 3))
    write_animation_npz(big, grid, np.array([[0, 1, 2]]), np.zeros((2,) + grid.shape), 24.0)
    _, rig_dir = run_rig
    cases = {
        "too many vertices": (["--animation", big], "Decimate it first"),
        "one frame": (["--animation", one], "at least 2 frames"),
        "NaN": (["--animation", nan], "NaN"),
        "missing": (["--animation", tmp_path / "nope.npz"], "not found"),
        "bones": (["--animation", sydney["root"] / "run.npz", "--bones", "0"], "between 1 and"),
        "influences": (["--animation", sydney["root"] / "run.npz", "--influences", "12"], "between 1 and 8"),
        "other mesh": (["--animation", other, "--rig", rig_dir / "rig.npz"], "must be made for this mesh"),
    }
    for label, (args, words) in cases.items():
        out = tmp_path / label.replace(" ", "_")
        proc = run_backend("rig", *args, "--out", out)
        assert proc.returncode == 2 and words in proc.stderr, (label, proc.stderr[-2000:])
        assert not out.exists(), f"{label}: nothing may be written"
    # A folder holding something else is not overwritten.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    proc = run_backend("rig", "--animation", sydney["root"] / "run.npz", "--out", busy)
    assert proc.returncode == 2 and "not empty" in proc.stderr and (busy / "notes.txt").read_text() == "mine"


def test_blender_imports_the_rig_with_its_motion(bpy_version, sydney, run_rig, tmp_path):
    """Blender's own glTF importer makes an armature, a skinned mesh and an action that moves the
    mesh as the animation does (the route to any engine: FBX, glTF)."""
    _, out = run_rig
    truth = tmp_path / "truth.npy"
    np.save(truth, sydney["run"])
    script = f'''
import json, numpy as np, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath={str(out / "rigged.glb")!r})
mesh = next(o for o in bpy.context.scene.objects if o.type == "MESH")
arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
truth = np.load({str(truth)!r})
scene = bpy.context.scene
to_y_up = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64)
posed = []
for t in range(len(truth)):
    scene.frame_set(t)  # glTF's time t / 24 s at the scene's 24 fps
    ev = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get())
    m = ev.to_mesh()
    co = np.empty(len(m.vertices) * 3)
    m.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    mw = np.array(mesh.matrix_world)
    posed.append(((co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]) @ to_y_up.T).tolist())
print("RESULT: " + json.dumps({{"bones": len(arm.data.bones), "groups": len(mesh.vertex_groups),
                               "modifier": [md.type for md in mesh.modifiers], "posed": posed}}))
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    result, _ = run_rig
    assert r["bones"] == result["bones"] and r["groups"] == result["bones"] and "ARMATURE" in r["modifier"]
    error = _error(np.array(r["posed"]), sydney["run"], sydney["diag"])
    assert error.mean() < 0.004, error


# Blender's side of the two tests below: the extension installed, sydney's run as AM_ keys on a
# new mesh (keyed from scene frame START), and the posed mesh read back in world coordinates.
KEYED_MESH = '''
import importlib, json
import bpy
import numpy as np

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.extensions.package_install_files(filepath={zip!r}, repo="user_default", enable_on_install=True)
PKG = "bl_ext.user_default.actionmesh"
shape_keys = importlib.import_module(PKG + ".shape_keys")
data = np.load({npz!r})
rest, faces, offsets = data["vertices"], data["faces"], data["offsets"]
T, START = len(offsets), {start}
mesh = bpy.data.meshes.new("Sydney")
mesh.from_pydata(rest.tolist(), [], faces.tolist())
obj = bpy.data.objects.new("Sydney", mesh)
bpy.context.scene.collection.objects.link(obj)
bpy.context.view_layer.objects.active = obj
obj.select_set(True)
scene = bpy.context.scene

def poses(o, first, count):
    """The evaluated mesh in world coordinates at scene frames first .. first + count - 1."""
    out = []
    for f in range(first, first + count):
        bpy.context.scene.frame_set(f)  # undo replaces the scene's data: look it up each time
        ev = o.evaluated_get(bpy.context.evaluated_depsgraph_get())
        m = ev.to_mesh()
        co = np.empty(len(m.vertices) * 3)
        m.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        mw = np.array(o.matrix_world)
        out.append(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3])
    return np.stack(out)
'''


BAKE = KEYED_MESH + '''
obj.location = (3.0, -1.0, 0.5)  # anywhere in the scene: the rig lives in the mesh's own space
shape_keys.apply_offsets_as_shape_keys(obj, offsets, start_frame=START, scene=scene)

def world_frames(o):
    return poses(o, START, T)

keys_pose = world_frames(obj)
state = {{"objects": sorted(o.name for o in bpy.data.objects), "groups": len(obj.vertex_groups),
         "modifiers": [m.type for m in obj.modifiers], "actions": len(bpy.data.actions),
         "muted": [k.mute for k in obj.data.shape_keys.key_blocks]}}
bpy.ops.ed.undo_push(message="before the rig")
status = bpy.ops.actionmesh.bake_to_armature("EXEC_DEFAULT", True)
job = bpy.context.window_manager.actionmesh_job
obj = bpy.data.objects["Sydney"]
arm = next((o for o in bpy.data.objects if o.type == "ARMATURE"), None)
baked = {{"bones": len(arm.data.bones) if arm else 0, "groups": len(obj.vertex_groups),
         "modifiers": [m.type for m in obj.modifiers], "muted": [k.mute for k in obj.data.shape_keys.key_blocks],
         "line": job.status, "error": job.last_error}}
rig_pose = world_frames(obj)
bpy.ops.ed.undo()
obj = bpy.data.objects["Sydney"]
undone = {{"objects": sorted(o.name for o in bpy.data.objects), "groups": len(obj.vertex_groups),
          "modifiers": [m.type for m in obj.modifiers], "actions": len(bpy.data.actions),
          "muted": [k.mute for k in obj.data.shape_keys.key_blocks]}}
# Again, then key that armature a second time with Use Existing Rig (its weights held).
bpy.context.view_layer.objects.active = obj
obj.select_set(True)
bpy.ops.actionmesh.bake_to_armature()
arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
for k in obj.data.shape_keys.key_blocks:
    k.mute = False
obj.modifiers.remove(obj.modifiers["AM_Armature"])
for o in bpy.data.objects:
    o.select_set(o in (obj, arm))
bpy.context.view_layer.objects.active = obj
status2 = bpy.ops.actionmesh.bake_to_armature(use_existing_rig=True)
existing_pose = world_frames(obj)
job = bpy.context.window_manager.actionmesh_job
existing = {{"line": job.status, "error": job.last_error, "armatures": sum(o.type == "ARMATURE" for o in bpy.data.objects)}}
# Bad input: no armature selected for Use Existing Rig; a mesh without AM_ keys.
for o in bpy.data.objects:
    o.select_set(o == obj)
before_bad = (len(bpy.data.objects), len(bpy.data.actions), len(obj.vertex_groups))
try:
    no_arm = sorted(bpy.ops.actionmesh.bake_to_armature(use_existing_rig=True))
except RuntimeError as exc:
    no_arm = str(exc)
no_arm_error = job.last_error
plain = bpy.data.objects.new("Plain", bpy.data.meshes.new("Plain"))
bpy.context.scene.collection.objects.link(plain)
bpy.context.view_layer.objects.active = plain
try:
    bpy.ops.actionmesh.bake_to_armature()
    no_keys = "ran"
except RuntimeError as exc:
    no_keys = str(exc)
bad = {{"no_arm": no_arm, "no_arm_error": no_arm_error, "no_keys": no_keys,
       "unchanged": before_bad == (len(bpy.data.objects) - 1, len(bpy.data.actions), len(obj.vertex_groups))}}
print("RESULT: " + json.dumps({{"status": sorted(status), "status2": sorted(status2), "baked": baked,
                               "existing": existing, "state": state, "undone": undone, "bad": bad,
                               "keys_pose": keys_pose.tolist(), "rig_pose": rig_pose.tolist(),
                               "existing_pose": existing_pose.tolist()}}))
'''


def test_bake_to_armature_in_blender(bpy_version, extension_zip, sydney, tmp_path):
    """The AM_ keys of a mesh placed anywhere become an armature, weights and bone keys that pose
    it as the keys did; the selected armature can be keyed instead; undo restores the scene."""
    script = BAKE.format(zip=extension_zip, npz=str(sydney["root"] / "run.npz"), start=5)
    r = run_blender(script, bpy_version, tmp_path=tmp_path, env={"ACTIONMESH_BACKEND_PYTHON": sys.executable})
    assert r["status"] == ["FINISHED"], r["baked"]["error"]
    baked = r["baked"]
    assert 1 < baked["bones"] <= 32 and baked["groups"] == baked["bones"] and "ARMATURE" in baked["modifiers"]
    assert baked["muted"][0] is False and all(baked["muted"][1:]), "the AM_ keys are muted, not deleted"
    assert "armature" in baked["line"] and "bones" in baked["line"], baked["line"]
    keys_pose = np.array(r["keys_pose"])
    diag = float(np.linalg.norm(keys_pose[0].max(axis=0) - keys_pose[0].min(axis=0)))
    # The armature poses the mesh as the keys did (the rig's own error: 0.17 % measured).
    error = _error(np.array(r["rig_pose"]), keys_pose, diag)
    assert error.mean() < 0.004 and error.max() < 0.008, error
    assert r["status2"] == ["FINISHED"], r["existing"]["error"]
    assert r["existing"]["armatures"] == 1, "Use Existing Rig keys that armature, it makes no other"
    error = _error(np.array(r["existing_pose"]), keys_pose, diag)
    assert error.mean() < 0.004, error
    assert r["undone"] == r["state"], "undo restores the scene as it was before the rig"
    bad = r["bad"]
    # An operator's error report reaches a script as a RuntimeError with the message.
    assert "Select the armature" in str(bad["no_arm"]) and "Select the armature" in bad["no_arm_error"], bad
    assert "AM_" in bad["no_keys"] or "poll" in bad["no_keys"], bad
    assert bad["unchanged"], bad


EXPORT = KEYED_MESH + '''
scene.frame_start, scene.frame_end = START, T
shape_keys.apply_offsets_as_shape_keys(obj, offsets, start_frame=START, scene=scene)

truth = poses(obj, 1, T)
diag = float(np.linalg.norm(truth[0].max(axis=0) - truth[0].min(axis=0)))

def reimported(importer, path):
    """The file imported into an empty scene: its mesh's poses against the truth, vertex by vertex
    (an exporter may split vertices: each is matched to the source vertex at its rest position),
    aligned on the frame that fits best (exporters differ in where time 0 lands)."""
    from mathutils import kdtree

    bpy.ops.wm.read_factory_settings(use_empty=True)
    importer(filepath=path)
    o = next(x for x in bpy.context.scene.objects if x.type == "MESH")
    co = np.empty(len(o.data.vertices) * 3)
    o.data.vertices.foreach_get("co", co)
    mw = np.array(o.matrix_world)
    at_rest = co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]
    tree = kdtree.KDTree(len(rest))
    for i, p in enumerate(rest):
        tree.insert(p.tolist(), i)
    tree.balance()
    source = np.array([tree.find(p.tolist())[1] for p in at_rest])
    best = None
    for first in (0, 1, 2):
        e = np.linalg.norm(poses(o, first, T) - truth[:, source], axis=-1).mean(axis=1) / diag
        best = e if best is None or e.mean() < best.mean() else best
    return best.tolist()

# 1. The shape-key result through Alembic (Blender's exporter writes the evaluated mesh per frame).
bpy.ops.wm.alembic_export(filepath={abc!r}, start=1, end=T, selected=False)
# 2. Baked to an armature, through FBX and glTF (skin, bones, one action).
bpy.ops.actionmesh.bake_to_armature()
baked = bpy.context.window_manager.actionmesh_job.status
for o in bpy.context.scene.objects:
    o.select_set(True)
bpy.ops.export_scene.fbx(filepath={fbx!r}, use_selection=True, bake_anim=True, add_leaf_bones=False)
bpy.ops.export_scene.gltf(filepath={glb!r}, export_format="GLB", use_selection=True)
errors = {{"abc": reimported(bpy.ops.wm.alembic_import, {abc!r}), "fbx": reimported(bpy.ops.import_scene.fbx, {fbx!r}),
          "glb": reimported(bpy.ops.import_scene.gltf, {glb!r})}}
print("RESULT: " + json.dumps({{"errors": errors, "baked": baked}}), flush=True)
import os
os._exit(0)  # bpy 4.2 can crash tearing down after the importers ran; the result is printed
'''


def test_the_result_leaves_through_blenders_own_exporters(bpy_version, extension_zip, sydney, tmp_path):
    """The routes to other tools, no code of ours on the way: the shape-key result to Alembic, the
    baked rig to FBX and glTF; each re-imported into an empty scene moves as the keys did."""
    script = EXPORT.format(zip=extension_zip, npz=str(sydney["root"] / "run.npz"), start=1,
                           abc=str(tmp_path / "run.abc"),
                           fbx=str(tmp_path / "run.fbx"), glb=str(tmp_path / "run.glb"))
    r = run_blender(script, bpy_version, tmp_path=tmp_path, env={"ACTIONMESH_BACKEND_PYTHON": sys.executable})
    assert "armature" in r["baked"], r["baked"]
    for route, error in r["errors"].items():
        error = np.array(error)
        print(f"{bpy_version} {route}: mean {100 * error.mean():.3f}%, worst frame {100 * error.max():.3f}%")
        # Alembic stores the evaluated mesh: exact up to float32; the rigs carry the rig's own
        # error (0.17 % measured) and the exporters' rounding.
        bound = 1e-4 if route == "abc" else 0.004
        assert error.mean() < bound, (route, error)


def test_rigid_segments_find_the_parts_that_move_as_one():
    """Two boxes turning apart (a hinge): two segments, each vertex in its own box's, each motion
    recovered exactly; the rigid fit never returns a mirror."""
    from scipy.spatial.transform import Rotation

    from backend.rigging.segments import apply_segments, rigid_fit, rigid_segments

    rng = np.random.default_rng(0)
    left = rng.uniform([-1.0, 0, 0], [0.0, 0.3, 0.3], (200, 3))
    right = rng.uniform([0.0, 0, 0], [1.0, 0.3, 0.3], (200, 3))
    rest = np.concatenate([left, right])
    angles = np.linspace(0, 1.0, 8)
    frames = np.stack([np.concatenate([left, Rotation.from_rotvec([0, 0, a]).apply(right)]) for a in angles])
    labels, rot, trans = rigid_segments(rest, frames, 2)
    assert len(set(labels[:200])) == 1 and len(set(labels[200:])) == 1 and labels[0] != labels[-1]
    assert np.abs(apply_segments(rest, labels, rot, trans) - frames).max() < 1e-9
    mirrored = rest * [-1, 1, 1]
    r, _ = rigid_fit(rest, mirrored[None], np.ones((1, len(rest))))
    assert np.linalg.det(r[0, 0]) > 0.99


def test_the_skeleton_is_one_tree_rooted_near_the_centre():
    from backend.rigging.skeleton import global_transforms, hierarchy, local_transforms, topological_order

    rng = np.random.default_rng(1)
    rest = rng.normal(size=(300, 3))
    weights = np.zeros((300, 5))
    weights[np.arange(300), np.argsort(np.argsort(rest[:, 0])) * 5 // 300] = 1.0  # five slabs along x
    transforms = np.tile(np.eye(4), (3, 5, 1, 1))
    transforms[:, 4, :3, 3] = [[0, 0, 0], [0, 0.1, 0], [0, 0.2, 0]]  # the last slab moves
    parents = hierarchy(rest, weights, transforms)
    assert (parents < 0).sum() == 1 and len(topological_order(parents)) == 5
    assert parents.tolist().index(-1) == 2, "the middle slab is nearest the centre"
    globals_ = transforms.copy()
    globals_[:, :, :3, 3] += rng.normal(size=(5, 3))
    assert np.allclose(global_transforms(local_transforms(globals_, parents), parents), globals_)
    with pytest.raises(ValueError, match="cycle"):
        topological_order(np.array([1, 0]))


def test_without_the_solver_the_rig_says_what_to_install(monkeypatch):
    from backend.errors import Unsupported
    from backend.rigging.skinning import decompose

    monkeypatch.setitem(sys.modules, "py_dem_bones", None)  # as on a platform without its wheel
    rest = np.eye(3)
    with pytest.raises(Unsupported, match="py-dem-bones"):
        decompose(rest, np.stack([rest, rest + 0.1]), np.array([[0, 1, 2]]), 1)


def test_connected_bones_of_a_given_rig_only_turn():
    """A rig as an artist builds it: a joint at the hinge's pivot, connected to its parent (Blender
    holds a connected bone's head at its parent's and ignores its location key). The motion of two
    boxes turning about that pivot is reproduced by turning alone; every frame keeps the bone's rest
    offset from its parent. With its joints where nothing pivots, turning alone could not follow."""
    from scipy.spatial.transform import Rotation

    from backend.rigging import animate_rig

    rng = np.random.default_rng(0)
    left = rng.uniform([-1.0, -0.15, -0.15], [0.0, 0.15, 0.15], (150, 3))
    right = rng.uniform([0.0, -0.15, -0.15], [1.0, 0.15, 0.15], (150, 3))
    rest = np.concatenate([left, right])
    faces = np.array([[0, 1, 2], [150, 151, 152]])
    frames = np.stack([np.concatenate([left + [0, 0.05 * t, 0], Rotation.from_rotvec([0, 0, 0.15 * t]).apply(right)
                                       + [0, 0.05 * t, 0]]) for t in range(6)])
    weights = np.zeros((300, 2))
    weights[:150, 0] = weights[150:, 1] = 1.0
    bind = np.tile(np.eye(4), (2, 1, 1))
    bind[0, :3, 3] = [-0.5, 0, 0]  # the root in the left box
    bind[1, :3, 3] = [0.0, 0, 0]  # the joint at the pivot
    kw = dict(weights=weights, bind=bind, parents=np.array([-1, 0]), names=["upper", "lower"])
    held = animate_rig(rest, frames, faces, connected=np.array([False, True]), **kw)
    offset = (np.linalg.inv(bind[0]) @ bind[1])[:3, 3]
    assert np.allclose(held.local[:, 1, :3, 3], offset)
    assert held.error.max() < 1e-6, held.error
    # Joints where nothing pivots (the right box's centre): turning alone cannot follow.
    bind[1, :3, 3] = [0.5, 0, 0]
    off_pivot = animate_rig(rest, frames, faces, connected=np.array([False, True]), **kw)
    assert off_pivot.error.max() > 100 * held.error.max() + 1e-3


def test_a_cancelled_rig_writes_nothing(sydney, tmp_path):
    """Cancel between the decomposition's parts (the service's cancel sets the event): the job
    stops with Cancelled and leaves no output folder."""
    from backend.errors import Cancelled
    from backend.jobs import JobContext
    from backend.pipelines.rig import run_rig

    seen = []

    def sink(stage, step, total, message):
        seen.append(message)
        if "skinning decomposition" in message:
            ctx.cancel_event.set()

    ctx = JobContext(sink)
    with pytest.raises(Cancelled):
        run_rig(ctx, animation=str(sydney["root"] / "run.npz"), out=str(tmp_path / "out"))
    assert any("rigid segments" in m for m in seen) and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*")), "no hidden partial folder left"
