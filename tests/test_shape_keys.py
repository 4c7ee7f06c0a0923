# SPDX-License-Identifier: GPL-3.0-or-later
"""actionmesh_blender.shape_keys in real Blender (4.2 legacy actions and 5.0 slotted actions)."""

from __future__ import annotations

import textwrap

from blender_harness import run_blender

# Shared helpers, prepended to every script run inside Blender.
PRELUDE = textwrap.dedent('''
    import json
    import bpy
    import numpy as np
    from actionmesh_blender import shape_keys as sk

    def fresh_scene():
        for ob in list(bpy.data.objects):
            bpy.data.objects.remove(ob)
        scene = bpy.context.scene
        scene.frame_start = 1
        scene.frame_end = 4
        scene.frame_set(1)
        return scene

    def fcurves_of(id_data):
        """The F-curves driving id_data (legacy action.fcurves or the assigned slot's channelbag)."""
        adt = id_data.animation_data
        if adt is None or adt.action is None:
            return []
        action = adt.action
        if hasattr(action, "slots") and hasattr(action, "layers"):
            from bpy_extras.anim_utils import action_get_channelbag_for_slot
            bag = action_get_channelbag_for_slot(action, adt.action_slot)
            return list(bag.fcurves) if bag is not None else []
        return list(action.fcurves)

    def get_co(coll, n):
        buf = np.empty(n * 3, dtype=np.float32)
        coll.foreach_get("co", buf)
        return buf.reshape(-1, 3)

    def evaluated_co(obj):
        depsgraph = bpy.context.evaluated_depsgraph_get()
        mesh = obj.evaluated_get(depsgraph).data
        return get_co(mesh.vertices, len(mesh.vertices))

    def snapshot(obj):
        """Everything about obj (and the global data counts) that the module must not disturb."""
        mesh = obj.data
        snap = {
            "matrix": [list(r) for r in obj.matrix_world],
            "location": list(obj.location), "rotation": list(obj.rotation_euler),
            "scale": list(obj.scale),
            "verts": get_co(mesh.vertices, len(mesh.vertices)).tolist(),
            "materials": [m.name if m else None for m in mesh.materials],
            "uv_layers": [uv.name for uv in mesh.uv_layers],
            "modifiers": [(m.name, m.type, m.show_viewport) for m in obj.modifiers],
            "active_key_index": obj.active_shape_key_index,
            "frame": [bpy.context.scene.frame_start, bpy.context.scene.frame_end],
            "n_actions": len(bpy.data.actions), "action_names": sorted(a.name for a in bpy.data.actions),
            "n_keys_datablocks": len(bpy.data.shape_keys),
        }
        key = mesh.shape_keys
        snap["has_key"] = key is not None
        if key is not None:
            snap["key_blocks"] = [
                (kb.name, kb.value, kb.relative_key.name, kb.mute, kb.slider_min, kb.slider_max,
                 kb.vertex_group, get_co(kb.points, len(kb.points)).tolist())
                for kb in key.key_blocks]
            adt = key.animation_data
            snap["action"] = adt.action.name if adt and adt.action else None
            slot = getattr(adt, "action_slot", None) if adt else None
            snap["slot"] = slot.identifier if slot is not None else None
            layered = adt is not None and adt.action is not None and hasattr(adt.action, "slots")
            snap["slots"] = [s.identifier for s in adt.action.slots] if layered else None
            snap["layers"] = ([[len(st.channelbags) for st in layer.strips] for layer in adt.action.layers]
                              if layered else None)
            snap["fcurves"] = [
                (fc.data_path, fc.array_index,
                 [tuple(p.co) for p in fc.keyframe_points],
                 [p.interpolation for p in fc.keyframe_points])
                for fc in fcurves_of(key)]
        return snap

    def add_smile(obj):
        """A user shape key 'Smile' with its own F-curve animation (frames 1 -> 0, 9 -> 1)."""
        obj.shape_key_add(name="Basis", from_mix=False)
        smile = obj.shape_key_add(name="Smile", from_mix=False)
        smile.value = 0.0
        co = get_co(smile.points, len(smile.points))
        co[:, 2] += 0.25
        co[:, 0] *= 1.5
        smile.points.foreach_set("co", co.ravel())
        smile.value = 0.0
        smile.keyframe_insert("value", frame=1)
        smile.value = 1.0
        smile.keyframe_insert("value", frame=9)
        return smile

    def result(**kw):
        print("RESULT: " + json.dumps(kw))
''')


def run(script: str, version: str, tmp_path) -> dict:
    return run_blender(PRELUDE + textwrap.dedent(script), version, tmp_path=tmp_path)


def test_animation_is_live(bpy_version, tmp_path):
    res = run('''
        scene = fresh_scene()
        bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8)
        obj = bpy.context.object
        V = len(obj.data.vertices)
        base = get_co(obj.data.vertices, V)
        rng = np.random.default_rng(0)
        T, start = 5, 3
        offsets = (rng.normal(size=(T, V, 3)) * 0.2).astype(np.float32)

        names = sk.apply_offsets_as_shape_keys(obj, offsets, start_frame=start)
        key = obj.data.shape_keys
        errors = []
        for t in range(T):
            scene.frame_set(start + t)
            errors.append(float(np.abs(evaluated_co(obj) - (base + offsets[t])).max()))
        # Halfway between two frames the two poses blend linearly.
        scene.frame_set(start + 1, subframe=0.5)
        half = float(np.abs(evaluated_co(obj) - (base + 0.5 * (offsets[1] + offsets[2]))).max())
        # Before the animation the first pose is held, after it the last one.
        scene.frame_set(1)
        before = float(np.abs(evaluated_co(obj) - (base + offsets[0])).max())
        scene.frame_set(start + T + 5)
        after = float(np.abs(evaluated_co(obj) - (base + offsets[-1])).max())

        fcs = {fc.data_path: fc for fc in fcurves_of(key)}
        values = {}
        for name in names:
            fc = fcs['key_blocks["%s"].value' % name]
            values[name] = [round(fc.evaluate(f), 6) for f in (1, 3, 4, 4.5, 5, 6, 7, 8, 20)]
        interps = sorted({p.interpolation for fc in fcs.values() for p in fc.keyframe_points})
        stored = [float(np.abs(get_co(key.key_blocks[n].points, V) - (base + offsets[t])).max())
                  for t, n in enumerate(names)]
        result(names=names, key_names=[kb.name for kb in key.key_blocks], errors=errors, half=half,
               before=before, after=after, values=values, interps=interps, stored=stored,
               relative=[key.key_blocks[n].relative_key.name for n in names],
               frame=[scene.frame_start, scene.frame_end],
               action=key.animation_data.action.name, obj_action=obj.animation_data is not None,
               n_fcurves=len(fcs))
    ''', bpy_version, tmp_path)
    names = [f"AM_{t:03d}" for t in range(5)]
    assert res["names"] == names
    assert res["key_names"] == ["Basis"] + names
    assert res["relative"] == ["Basis"] * 5
    assert max(res["errors"]) < 1e-5, res["errors"]
    assert max(res["stored"]) < 1e-6
    assert res["half"] < 1e-5 and res["before"] < 1e-5 and res["after"] < 1e-5
    assert res["frame"] == [1, 7]  # frame_end raised to start + T - 1, frame_start untouched
    assert res["interps"] == ["LINEAR"]
    assert res["action"] == "Sphere_ActionMesh"
    assert res["obj_action"] is False  # the animation lives on the Key datablock
    assert res["n_fcurves"] == 5
    #               frames: 1  3  4  4.5  5  6  7  8  20
    assert res["values"] == {
        "AM_000": [1, 1, 0, 0, 0, 0, 0, 0, 0],
        "AM_001": [0, 0, 1, 0.5, 0, 0, 0, 0, 0],
        "AM_002": [0, 0, 0, 0.5, 1, 0, 0, 0, 0],
        "AM_003": [0, 0, 0, 0, 0, 1, 0, 0, 0],
        "AM_004": [0, 0, 0, 0, 0, 0, 1, 1, 1],
    }


def test_frame_end_never_shrinks(bpy_version, tmp_path):
    res = run('''
        scene = fresh_scene()
        scene.frame_end = 250
        bpy.ops.mesh.primitive_cube_add()
        obj = bpy.context.object
        sk.apply_offsets_as_shape_keys(obj, np.zeros((3, 8, 3), np.float32), start_frame=10)
        result(frame=[scene.frame_start, scene.frame_end])
    ''', bpy_version, tmp_path)
    assert res["frame"] == [1, 250]


def test_user_key_and_animation_are_kept(bpy_version, tmp_path):
    res = run('''
        scene = fresh_scene()
        scene.frame_end = 20
        bpy.ops.mesh.primitive_uv_sphere_add(segments=12, ring_count=6, location=(1, 2, 3))
        obj = bpy.context.object
        obj.rotation_euler = (0.1, 0.2, 0.3)
        obj.scale = (1, 2, 1)
        mat = bpy.data.materials.new("Skin")
        obj.data.materials.append(mat)
        mod = obj.modifiers.new("Subd", 'SUBSURF')
        mod.show_viewport = False  # kept, but does not change the evaluated vertex count
        smile = add_smile(obj)
        V = len(obj.data.vertices)
        key = obj.data.shape_keys
        action = key.animation_data.action
        before = snapshot(obj)
        base = get_co(key.reference_key.points, V)
        smile_co = get_co(smile.points, V)

        offsets = (np.random.default_rng(1).normal(size=(4, V, 3)) * 0.1).astype(np.float32)
        names = sk.apply_offsets_as_shape_keys(obj, offsets, start_frame=5)
        after = snapshot(obj)

        # Smile (0 at frame 1 -> 1 at frame 9, Bezier) still mixes in with our animation.
        errors = []
        for t in range(4):
            f = 5 + t
            scene.frame_set(f)
            s = [fc for fc in fcurves_of(key) if fc.data_path == 'key_blocks["Smile"].value'][0].evaluate(f)
            expected = base + s * (smile_co - base) + offsets[t]
            errors.append(float(np.abs(evaluated_co(obj) - expected).max()))
        result(before=before, after=after, names=names, errors=errors,
               same_action=key.animation_data.action == action,
               n_actions=len(bpy.data.actions))
    ''', bpy_version, tmp_path)
    before, after = res["before"], res["after"]
    assert res["same_action"] and res["n_actions"] == 1
    assert after["action"] == before["action"] and after["slot"] == before["slot"]
    # The user's keys are untouched and come first; ours follow.
    assert after["key_blocks"][:2] == before["key_blocks"]
    assert [kb[0] for kb in after["key_blocks"]] == ["Basis", "Smile"] + res["names"]
    # The user's F-curve is untouched; ours are added to the same action / slot.
    assert after["fcurves"][0] == before["fcurves"][0]
    assert [fc[0] for fc in after["fcurves"]] == (
        ['key_blocks["Smile"].value'] + [f'key_blocks["{n}"].value' for n in res["names"]])
    for key in ("matrix", "location", "rotation", "scale", "verts", "materials", "uv_layers",
                "modifiers", "active_key_index"):
        assert after[key] == before[key], key
    assert after["frame"] == [1, 20]
    assert max(res["errors"]) < 1e-5, res["errors"]


def test_reapply_replaces_previous_keys(bpy_version, tmp_path):
    res = run('''
        scene = fresh_scene()
        bpy.ops.mesh.primitive_cube_add()
        obj = bpy.context.object
        add_smile(obj)
        V = len(obj.data.vertices)
        key = obj.data.shape_keys
        base = get_co(key.reference_key.points, V)
        rng = np.random.default_rng(2)
        first = rng.normal(size=(5, V, 3)).astype(np.float32)
        sk.apply_offsets_as_shape_keys(obj, first, start_frame=1)
        sk.apply_offsets_as_shape_keys(obj, first, start_frame=1)
        again = [kb.name for kb in key.key_blocks]
        again_fc = [fc.data_path for fc in fcurves_of(key)]
        # A generated key deleted by hand leaves its F-curve behind; re-applying still works.
        obj.shape_key_remove(key.key_blocks["AM_001"])
        stale_left = 'key_blocks["AM_001"].value' in [fc.data_path for fc in fcurves_of(key)]
        second = rng.normal(size=(3, V, 3)).astype(np.float32)
        sk.apply_offsets_as_shape_keys(obj, second, start_frame=2)
        shorter = [kb.name for kb in key.key_blocks]
        shorter_fc = [fc.data_path for fc in fcurves_of(key)]
        scene.frame_set(3)
        smile = [fc for fc in fcurves_of(key) if "Smile" in fc.data_path][0].evaluate(3)
        smile_co = get_co(key.key_blocks["Smile"].points, V)
        err = float(np.abs(evaluated_co(obj) - (base + smile * (smile_co - base) + second[1])).max())

        # remove_generated_keys leaves the user's key and animation alone.
        sk.remove_generated_keys(obj)
        removed = [kb.name for kb in key.key_blocks]
        removed_fc = [fc.data_path for fc in fcurves_of(key)]
        user_action_kept = key.animation_data is not None and key.animation_data.action is not None

        # On a plain mesh, remove_generated_keys also drops the action and Basis it created.
        bpy.ops.mesh.primitive_cube_add(location=(3, 0, 0))
        plain = bpy.context.object
        n_actions = len(bpy.data.actions)
        sk.apply_offsets_as_shape_keys(plain, first, start_frame=1)
        sk.remove_generated_keys(plain)
        result(stale_left=stale_left, again=again, again_fc=again_fc, shorter=shorter, shorter_fc=shorter_fc, err=err,
               removed=removed, removed_fc=removed_fc, user_action_kept=user_action_kept,
               plain_key=plain.data.shape_keys is not None,
               actions_added=len(bpy.data.actions) - n_actions)
    ''', bpy_version, tmp_path)
    am = [f"AM_{t:03d}" for t in range(5)]
    assert res["again"] == ["Basis", "Smile"] + am  # T keys, not 2T
    assert res["again_fc"] == ['key_blocks["Smile"].value'] + [f'key_blocks["{n}"].value' for n in am]
    assert res["stale_left"]  # precondition: Blender keeps the F-curve of a removed key
    assert res["shorter"] == ["Basis", "Smile", "AM_000", "AM_001", "AM_002"]
    assert res["shorter_fc"] == ['key_blocks["Smile"].value'] + [
        f'key_blocks["AM_00{t}"].value' for t in range(3)]
    assert res["err"] < 1e-5
    assert res["removed"] == ["Basis", "Smile"]
    assert res["removed_fc"] == ['key_blocks["Smile"].value']
    assert res["user_action_kept"]
    assert res["plain_key"] is False and res["actions_added"] == 0


def test_invalid_offsets_leave_object_unchanged(bpy_version, tmp_path):
    res = run('''
        scene = fresh_scene()
        bpy.ops.mesh.primitive_cube_add()
        plain = bpy.context.object
        bpy.ops.mesh.primitive_cube_add(location=(3, 0, 0))
        keyed = bpy.context.object
        add_smile(keyed)
        good = np.zeros((4, 8, 3), np.float32)
        nan = good.copy(); nan[2, 5, 1] = np.nan
        inf = good.copy(); inf[0, 0, 0] = np.inf
        cases = {"count": np.zeros((4, 1200, 3), np.float32), "nan": nan, "inf": inf,
                 "shape": np.zeros((4, 8), np.float32), "empty": np.zeros((0, 8, 3), np.float32)}
        out = {}
        for obj in (plain, keyed):
            for label, offsets in cases.items():
                before = snapshot(obj)
                try:
                    sk.apply_offsets_as_shape_keys(obj, offsets, start_frame=1)
                    msg = None
                except ValueError as exc:
                    msg = str(exc)
                out[obj.name + ":" + label] = [msg, snapshot(obj) == before]
        result(out=out)
    ''', bpy_version, tmp_path)
    out = res["out"]
    for label, (msg, unchanged) in out.items():
        assert msg is not None, f"{label}: no ValueError"
        assert unchanged, f"{label}: object changed"
    assert "1200 vertices" in out["Cube:count"][0] and "has 8" in out["Cube:count"][0]
    assert "NaN" in out["Cube:nan"][0]


def test_failure_midway_rolls_back(bpy_version, tmp_path):
    res = run('''
        scene = fresh_scene()
        bpy.ops.mesh.primitive_cube_add()
        plain = bpy.context.object
        bpy.ops.mesh.primitive_cube_add(location=(3, 0, 0))
        keyed = bpy.context.object
        add_smile(keyed)
        bpy.ops.mesh.primitive_cube_add(location=(6, 0, 0))
        slotless = bpy.context.object  # user action assigned to the Key, but (5.0) no slot yet
        slotless.shape_key_add(name="Basis", from_mix=False)
        slotless.data.shape_keys.animation_data_create()
        slotless.data.shape_keys.animation_data.action = bpy.data.actions.new("UserEmpty")

        real = sk._keyframes
        def boom(t, *args):
            if t == 2:
                raise RuntimeError("injected failure")
            return real(t, *args)
        sk._keyframes = boom
        offsets = np.random.default_rng(3).normal(size=(5, 8, 3)).astype(np.float32)
        out = {}
        for obj in (plain, keyed, slotless):
            before = snapshot(obj)
            try:
                sk.apply_offsets_as_shape_keys(obj, offsets, start_frame=1)
                msg = None
            except RuntimeError as exc:
                msg = str(exc)
            out[obj.name] = [msg, snapshot(obj) == before, snapshot(obj)["has_key"]]
        sk._keyframes = real
        # After a rolled-back failure the next run works normally.
        names = sk.apply_offsets_as_shape_keys(plain, offsets, start_frame=1)
        result(out=out, names=names, leftover=sorted(a.name for a in bpy.data.actions))
    ''', bpy_version, tmp_path)
    out = res["out"]
    assert out["Cube"] == ["injected failure", True, False]  # no Key, no Basis left on the plain mesh
    assert out["Cube.001"] == ["injected failure", True, True]
    assert out["Cube.002"] == ["injected failure", True, True]
    assert res["names"] == [f"AM_{t:03d}" for t in range(5)]
    # Only the two user actions (Smile's, "UserEmpty") and the one from the successful run.
    assert len(res["leftover"]) == 3 and {"Cube_ActionMesh", "UserEmpty"} <= set(res["leftover"])


def test_frame_step_maps_clip_rate_onto_scene(bpy_version, tmp_path):
    """frame_step 2 (a 12 fps clip in a 24 fps scene): key t is fully on at start + 2t, the two
    neighbouring keys blend in between, frame_end covers the last key; a fractional step works
    and a non-positive one is refused with nothing changed."""
    res = run('''
        scene = fresh_scene()
        bpy.ops.mesh.primitive_cube_add()
        obj = bpy.context.object
        offsets = np.zeros((3, 8, 3), np.float32)
        offsets[:, :, 0] = np.arange(3)[:, None]
        sk.apply_offsets_as_shape_keys(obj, offsets, start_frame=5, frame_step=2)
        xs = []
        for f in range(4, 11):
            scene.frame_set(f)
            xs.append(round(float(evaluated_co(obj)[:, 0].mean() - get_co(obj.data.vertices, 8)[:, 0].mean()), 4))
        frame_end = scene.frame_end
        refused = []
        for bad in (0, -1, float("nan")):
            try:
                sk.apply_offsets_as_shape_keys(obj, offsets, start_frame=5, frame_step=bad)
            except ValueError as exc:
                refused.append("frame_step" in str(exc))
        keys_after_refusal = [k.name for k in obj.data.shape_keys.key_blocks]
        sk.apply_offsets_as_shape_keys(obj, offsets, start_frame=1, frame_step=0.8)
        scene.frame_set(3)  # between key 2 (frame 2.6) and nothing after: held at the last pose
        held = round(float(evaluated_co(obj)[:, 0].mean() - get_co(obj.data.vertices, 8)[:, 0].mean()), 4)
        result(xs=xs, frame_end=frame_end, refused=refused, keys=keys_after_refusal, held=held)
    ''', bpy_version, tmp_path)
    assert res["xs"] == [0, 0, 0.5, 1, 1.5, 2, 2]
    assert res["frame_end"] == 9
    assert res["refused"] == [True, True, True]
    assert res["keys"] == ["Basis", "AM_000", "AM_001", "AM_002"]
    assert res["held"] == 2
