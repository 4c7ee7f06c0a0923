# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a per-frame vertex animation onto a mesh object as animated shape keys.

The animation arrives as offsets ``[T, V, 3]`` (float32, object-local space) relative to the
mesh's reference ("Basis") key. Each frame ``t`` becomes one relative shape key named
``{prefix}{t:03d}`` (``AM_000``, ``AM_001``, ...) whose ``value`` is animated so that exactly that
key is fully on at frame ``start_frame + t * frame_step`` (``frame_step`` 1 by default).

Keyframe layout (documented choice): key ``t`` gets ``value = 1`` at its own frame and ``0`` at the
previous / next frame *only where that neighbour frame belongs to the animation*. With Blender's
default constant extrapolation this means:

* between two animation frames the result blends linearly between the two poses (the weights of
  the two active keys always sum to 1);
* before ``start_frame`` the first pose is held, after the last frame the last pose is held
  (rather than snapping back to the Basis shape).

Works with Blender 4.2 (legacy ``Action.fcurves``) and 4.4+/5.x (slotted actions: slot + layer +
keyframe strip + channelbag). The animation lives on the Key datablock
(``obj.data.shape_keys.animation_data``). If that Key already has an action (the user's own shape
key animation), our F-curves are added to it, in its assigned slot; otherwise a new action is
created.

Only this module's keys are touched: keys whose name is the prefix followed by digits only (and
F-curves animating such names, including stale ones whose key was deleted by hand).
Re-running replaces the previous result. If anything fails midway, everything the call added is
rolled back (the previous generated keys, removed before the new ones are written, are not
restored).

Imports only bpy, the standard library and numpy.
"""

from __future__ import annotations

import math
import re

import bpy
import numpy as np

PREFIX = "AM_"

# Custom ID properties used to remember what this module created, so that
# `remove_generated_keys` can clean up after itself without touching user data.
_ACTION_MARK = "actionmesh_generated"
_BASIS_MARK = "actionmesh_added_basis"
# On the Key: the name of the generated keys' action once parked (park_generated_action).
PARKED_ACTION = "actionmesh_parked_action"

_LINEAR = 1  # enum value of 'LINEAR' in BezTriple.interpolation (CONSTANT=0, LINEAR=1, BEZIER=2)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _generated_name_re(prefix: str) -> re.Pattern:
    return re.compile(re.escape(prefix) + r"\d+\Z")


def _key_path_prefix(name: str) -> str:
    return f'key_blocks["{bpy.utils.escape_identifier(name)}"]'


def _is_slotted(action) -> bool:
    """True for Blender 4.4+ layered/slotted actions (5.0 has no `Action.fcurves` at all)."""
    return hasattr(action, "slots") and hasattr(action, "layers")


def _find_channelbag(action, slot):
    if slot is None:
        return None
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                return bag
    return None


def _ensure_channelbag(action, slot):
    try:
        from bpy_extras.anim_utils import action_ensure_channelbag_for_slot
    except ImportError:  # pragma: no cover - 4.4-era builds without the helper
        action_ensure_channelbag_for_slot = None
    if action_ensure_channelbag_for_slot is not None:
        return action_ensure_channelbag_for_slot(action, slot)
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type='KEYFRAME')
    return strip.channelbag(slot, ensure=True)


def _existing_fcurves(key):
    """The F-curve collection currently driving `key`, or None (no action / no slot / no bag)."""
    adt = key.animation_data
    if adt is None or adt.action is None:
        return None
    action = adt.action
    if _is_slotted(action):
        bag = _find_channelbag(action, getattr(adt, "action_slot", None))
        return None if bag is None else bag.fcurves
    return action.fcurves


def _action_is_empty(action) -> bool:
    if _is_slotted(action):
        for layer in action.layers:
            for strip in layer.strips:
                for slot in action.slots:
                    bag = strip.channelbag(slot)
                    if bag is not None and len(bag.fcurves):
                        return False
        return True
    return len(action.fcurves) == 0


def _remove_fcurves_for(fcurves, names, prefix: str) -> None:
    """Remove F-curves animating the keys `names`, plus stale ones left by generated keys that
    no longer exist (e.g. deleted by hand), which would otherwise block `fcurves.new`."""
    if fcurves is None:
        return
    prefixes = tuple(_key_path_prefix(n) for n in names)
    stale = re.compile(r'key_blocks\["' + re.escape(bpy.utils.escape_identifier(prefix)) + r'\d+"\]')
    doomed = [fc for fc in fcurves
              if (prefixes and fc.data_path.startswith(prefixes)) or stale.match(fc.data_path)]
    for fc in doomed:
        fcurves.remove(fc)


def _remove_generated(obj, prefix: str) -> None:
    """Remove our keys and their F-curves (no action / Basis cleanup)."""
    key = obj.data.shape_keys
    if key is None:
        return
    pattern = _generated_name_re(prefix)
    names = [kb.name for kb in key.key_blocks if pattern.match(kb.name) and kb != key.reference_key]
    _remove_fcurves_for(_existing_fcurves(key), names, prefix)
    if not names:
        return
    active_name = obj.active_shape_key.name if obj.active_shape_key is not None else None
    for name in names:
        obj.shape_key_remove(key.key_blocks[name])
    _restore_active(obj, active_name)


def _restore_active(obj, active_name) -> None:
    key = obj.data.shape_keys
    if key is None:
        return
    if active_name is not None and active_name in key.key_blocks:
        obj.active_shape_key_index = key.key_blocks.find(active_name)
    elif obj.active_shape_key_index >= len(key.key_blocks):
        obj.active_shape_key_index = max(0, len(key.key_blocks) - 1)


def _validate(obj, offsets) -> np.ndarray:
    if obj is None or getattr(obj, "type", None) != 'MESH':
        raise ValueError(f"object {getattr(obj, 'name', obj)!r} is not a mesh")
    if obj.mode == 'EDIT':
        raise ValueError(f"mesh {obj.name!r} is in Edit Mode; leave Edit Mode before applying the animation")
    arr = np.asarray(offsets)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"offsets must have shape [T, V, 3], got {list(arr.shape)}")
    if arr.shape[0] < 1:
        raise ValueError("offsets contain no frames")
    n_verts = len(obj.data.vertices)
    if arr.shape[1] != n_verts:
        raise ValueError(f"offsets have {arr.shape[1]} vertices but mesh {obj.data.name!r} "
                         f"(object {obj.name!r}) has {n_verts}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=(1, 2)).argmax())
        raise ValueError(f"offsets contain NaN or infinite values (first at frame index {bad})")
    key = obj.data.shape_keys
    if key is not None and not key.use_relative:
        raise ValueError(f"shape keys of mesh {obj.data.name!r} are in Absolute mode; "
                         "relative shape keys are required")
    return arr


def _keyframes(t: int, n_frames: int, start_frame: float, frame_step: float = 1.0) -> np.ndarray:
    def frame(i):
        return start_frame + i * frame_step

    co = []
    if t > 0:
        co += [frame(t - 1), 0.0]
    co += [frame(t), 1.0]
    if t < n_frames - 1:
        co += [frame(t + 1), 0.0]
    return np.asarray(co, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def apply_offsets_as_shape_keys(obj, offsets, *, start_frame, frame_step=1.0, prefix=PREFIX,
                                scene=None) -> list[str]:
    """Write `offsets` [T, V, 3] onto `obj` as animated relative shape keys; return their names.

    Key ``t`` is fully on at scene frame ``start_frame + t * frame_step``: ``frame_step`` maps the
    animation's rate onto the scene's (a 12 fps clip in a 24 fps scene: 2; it may be fractional,
    e.g. 0.8 for 30 fps into 24, and the keys then blend between scene frames).
    `scene` (default: the context scene) gets its frame_end raised to cover the animation.
    Raises ValueError (object untouched) for bad input; any other failure midway is rolled back
    and re-raised.
    """
    arr = _validate(obj, offsets)
    start_frame = int(start_frame)
    frame_step = float(frame_step)
    if not (math.isfinite(frame_step) and frame_step > 0):
        raise ValueError(f"frame_step must be a positive number, got {frame_step!r}")
    n_frames = arr.shape[0]
    if scene is None:
        scene = bpy.context.scene

    # Re-generating replaces the previous result.
    _remove_generated(obj, prefix)

    mesh = obj.data
    active_name = obj.active_shape_key.name if obj.active_shape_key is not None else None
    state = {
        "added_basis": False, "keys": [], "fcurves": [], "fcurve_coll": None,
        "created_action": None, "created_adt": False, "prev_slot": None, "slot_changed": False,
        "created_slot": None, "created_layer": None, "created_bag": None,
        "frame_end": scene.frame_end,
    }
    try:
        if mesh.shape_keys is None:
            obj.shape_key_add(name="Basis", from_mix=False)
            state["added_basis"] = True
        key = mesh.shape_keys
        ref = key.reference_key
        base = np.empty(len(ref.data) * 3, dtype=np.float32)
        ref.points.foreach_get("co", base)
        base = base.reshape(-1, 3)

        names = []
        for t in range(n_frames):
            kb = obj.shape_key_add(name=f"{prefix}{t:03d}", from_mix=False)
            state["keys"].append(kb.name)
            kb.relative_key = ref
            kb.value = 0.0  # Blender 5.0 defaults new keys to 1.0
            kb.points.foreach_set("co", (base + arr[t]).ravel())
            names.append(kb.name)

        fcurves = _ensure_fcurves(obj, key, state)
        for t, name in enumerate(names):
            path = _key_path_prefix(name) + ".value"
            fc = fcurves.new(path, index=0)
            state["fcurves"].append(fc)
            co = _keyframes(t, n_frames, start_frame, frame_step)
            n = len(co) // 2
            fc.keyframe_points.add(n)
            fc.keyframe_points.foreach_set("co", co)
            fc.keyframe_points.foreach_set("interpolation", [_LINEAR] * n)
            fc.update()

        scene.frame_end = max(scene.frame_end, math.ceil(start_frame + (n_frames - 1) * frame_step - 1e-6))
        if state["added_basis"]:
            key[_BASIS_MARK] = True
        _restore_active(obj, active_name)
        mesh.update()
        return names
    except BaseException:
        _rollback(obj, scene, state, active_name)
        raise


def _ensure_fcurves(obj, key, state):
    """Return the F-curve collection to write into, creating action/slot/channelbag if needed."""
    adt = key.animation_data
    if adt is None:
        adt = key.animation_data_create()
        state["created_adt"] = True
    action = adt.action
    if action is None:
        action = bpy.data.actions.new(f"{obj.name}_ActionMesh")
        action[_ACTION_MARK] = True
        state["created_action"] = action
        if _is_slotted(action):
            slot = action.slots.new(id_type='KEY', name=key.name)
            state["created_slot"] = slot
        adt.action = action
        if _is_slotted(action):
            state["slot_changed"] = True
            state["prev_slot"] = None
            adt.action_slot = slot
    elif _is_slotted(action) and adt.action_slot is None:
        # The user's action is assigned without a slot (so it animates nothing yet): pick a
        # suitable slot, or make one, so our animation is live.
        slot = next((s for s in action.slots if s.target_id_type in ('UNSPECIFIED', 'KEY')), None)
        if slot is None:
            slot = action.slots.new(id_type='KEY', name=key.name)
            state["created_slot"] = slot
        state["slot_changed"] = True
        state["prev_slot"] = None
        adt.action_slot = slot
    if _is_slotted(action):
        had_layers = len(action.layers) > 0
        had_bag = _find_channelbag(action, adt.action_slot) is not None
        bag = _ensure_channelbag(action, adt.action_slot)
        if state["created_action"] is None:  # a created action is removed whole on rollback
            if not had_layers:
                state["created_layer"] = action.layers[0]
            elif not had_bag:
                state["created_bag"] = (action.layers[0].strips[0], bag)
        coll = bag.fcurves
    else:
        coll = action.fcurves
    state["fcurve_coll"] = coll
    return coll


def _rollback(obj, scene, state, active_name) -> None:
    # Each step is best-effort so that one failing cleanup does not hide the others.
    def attempt(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001 - rollback must continue; original error is re-raised
            pass

    coll = state["fcurve_coll"]
    for fc in state["fcurves"]:
        attempt(lambda fc=fc: coll.remove(fc))
    key = obj.data.shape_keys
    if key is not None:
        adt = key.animation_data
        if adt is not None and state["slot_changed"]:
            attempt(lambda: setattr(adt, "action_slot", state["prev_slot"]))
        created = state["created_action"]
        if adt is not None and created is not None and adt.action == created:
            attempt(lambda: setattr(adt, "action", None))
        if created is None and adt is not None and adt.action is not None:
            # Structure added to the user's own action: channelbag / layer, then the slot.
            if state["created_bag"] is not None:
                strip, bag = state["created_bag"]
                attempt(lambda: strip.channelbags.remove(bag))
            if state["created_layer"] is not None:
                attempt(lambda: adt.action.layers.remove(state["created_layer"]))
            if state["created_slot"] is not None:
                attempt(lambda: adt.action.slots.remove(state["created_slot"]))
        if state["created_adt"]:
            attempt(key.animation_data_clear)
    if state["created_action"] is not None:
        attempt(lambda: bpy.data.actions.remove(state["created_action"]))
    if state["added_basis"]:
        attempt(obj.shape_key_clear)  # there were no keys before: drop the Key datablock
    else:
        key = obj.data.shape_keys
        for name in reversed(state["keys"]):
            if key is not None and name in key.key_blocks:
                attempt(lambda name=name: obj.shape_key_remove(key.key_blocks[name]))
        attempt(lambda: _restore_active(obj, active_name))
    attempt(lambda: setattr(scene, "frame_end", state["frame_end"]))


def remove_generated_keys(obj, prefix=PREFIX) -> None:
    """Remove the keys this module generated (prefix + digits) and their F-curves.

    Also removes the action if this module created it and it is now empty, and the Basis key
    (with its Key datablock) if this module added it and it is the only key left.
    """
    if obj is None or getattr(obj, "type", None) != 'MESH':
        raise ValueError(f"object {getattr(obj, 'name', obj)!r} is not a mesh")
    _remove_generated(obj, prefix)
    key = obj.data.shape_keys
    if key is None:
        return
    adt = key.animation_data
    action = adt.action if adt is not None else None
    if action is not None and action.get(_ACTION_MARK) and _action_is_empty(action):
        adt.action = None
        if action.users == 0:
            bpy.data.actions.remove(action)
        if adt.action is None and not adt.drivers and not len(adt.nla_tracks):
            key.animation_data_clear()
    if key.get(_BASIS_MARK) and len(key.key_blocks) == 1 and key.animation_data is None:
        obj.shape_key_clear()


def park_generated_action(obj) -> None:
    """Unassign the generated keys' action (this module's own only) and keep it with a fake user,
    its name on the Key (PARKED_ACTION): the keys stop animating but their timing stays readable."""
    key = obj.data.shape_keys
    adt = key.animation_data if key is not None else None
    action = adt.action if adt is not None else None
    if action is None or not action.get(_ACTION_MARK):
        return
    action.use_fake_user = True
    key[PARKED_ACTION] = action.name
    adt.action = None
    pattern = _generated_name_re(PREFIX)
    for block in key.key_blocks:  # left at their last evaluated values, exporters would write them
        if pattern.match(block.name):
            block.value = 0.0


def _all_fcurves(action):
    if not _is_slotted(action):
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips for slot in action.slots
            for bag in [strip.channelbag(slot)] if bag is not None for fc in bag.fcurves]


def read_generated_keys(obj, prefix=PREFIX) -> tuple[np.ndarray, np.ndarray, list[float], list[str]]:
    """The animation this module wrote, read back: (rest [V, 3] the reference key's coordinates,
    frames [T, V, 3] each generated key's, the scene frame where each key is fully on (None where
    its F-curve is gone), the keys' names), in key order. ValueError when the object holds none."""
    key = obj.data.shape_keys if getattr(obj, "type", None) == 'MESH' else None
    pattern = _generated_name_re(prefix)
    blocks = [] if key is None else [kb for kb in key.key_blocks if pattern.match(kb.name)]
    if not blocks:
        raise ValueError(f"'{obj.name}' has no {prefix} shape keys: run an ActionMesh job on it first")
    blocks.sort(key=lambda kb: int(kb.name[len(prefix):]))
    n = len(obj.data.vertices)

    def coordinates(block):
        co = np.empty(n * 3, dtype=np.float32)
        block.data.foreach_get("co", co)
        return co.reshape(n, 3)

    rest = coordinates(key.reference_key)
    frames = np.stack([coordinates(kb) for kb in blocks])
    fcurves = list(_existing_fcurves(key) or [])
    parked = bpy.data.actions.get(key.get(PARKED_ACTION, ""))
    if not fcurves and parked is not None:
        fcurves = _all_fcurves(parked)
    by_path = {fc.data_path: fc for fc in fcurves}
    when = []
    for t, kb in enumerate(blocks):
        fc = by_path.get(f"{_key_path_prefix(kb.name)}.value")
        full = [p.co[0] for p in (fc.keyframe_points if fc else []) if abs(p.co[1] - 1.0) < 1e-6]
        when.append(float(full[0]) if full else None)
    return rest, frames, when, [kb.name for kb in blocks]
