"""Source Prompt in real Blender (bpy 5.0 and 4.2 LTS), installed from the built extension zip,
driving a real backend subprocess with the tiny random video models (64x64 noise clips in seconds):
Make Clip puts the clip in the Sequencer (and Regenerate the next seed's), one undo removes it;
the panel's Generate then runs the video operators on it, for a new object and for the active mesh
(whose render is the clip's first frame, from a framing camera or the scene camera, with the
scene left as it was); bad input is refused with its message and nothing changed.

The clips are noise, so the mesh jobs get masks: a disc per frame.
"""


import numpy as np
from PIL import Image

from blender_harness import run_blender
from test_addon import PRELUDE
from test_addon_video import FAST, VIDEO_PRELUDE

PROMPT = "a red dragon flapping its wings"

PROMPT_PRELUDE = '''
settings = bpy.context.scene.actionmesh

def strips_now():
    editor = bpy.context.scene.sequence_editor
    if editor is None:
        return []
    every = editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all
    return sorted([s.name, s.type, s.channel, s.frame_final_start, s.frame_final_duration, bpy.path.abspath(s.filepath)]
                  for s in every)

def scene_state():
    """counts() and what Make Clip must leave alone besides its strip and the prompt's settings."""
    scene = bpy.context.scene
    render, settings = scene.render, scene.actionmesh  # looked up again: an undo replaces the scene's data
    return dict(counts(), strips=strips_now(), shape_key_data=len(bpy.data.shape_keys),
                materials=len(bpy.data.materials), camera=scene.camera.name if scene.camera else None,
                render=[render.engine, render.resolution_x, render.resolution_y, render.resolution_percentage,
                        render.film_transparent, render.filepath, render.image_settings.file_format],
                clip=[settings.prompt_clip, settings.prompt_camera, settings.prompt_object, settings.prompt_seed])

# The panel drawn into a recording layout: what it shows, which operators with which properties.
class Layout:
    enabled = True
    def __init__(self, log):
        self.log = log
    def __getattr__(self, name):
        return lambda *a, **k: Layout(self.log)
    def label(self, text="", **k):
        self.log["labels"].append(text)
    def prop(self, data, name, **k):
        if not hasattr(data, name):
            self.log["problems"].append(name)
    def operator(self, idname, text="", **k):
        category, op = idname.split(".")
        rna = getattr(getattr(bpy.ops, category), op).get_rna_type()
        entry = {"idname": idname, "text": text, "enabled": self.enabled, "props": {}}
        self.log["operators"].append(entry)
        log = self.log
        class Props:
            def __setattr__(self, key, value):
                if key not in rna.properties:
                    log["problems"].append(idname + "." + key)
                entry["props"][key] = value
        return Props()

def draw_panel():
    log = {"labels": [], "operators": [], "problems": []}
    fake = type("P", (), {"layout": Layout(log)})()
    bpy.types.VIEW3D_PT_actionmesh.draw(fake, bpy.context)
    return log

def panel_button(log, text):
    return next((o for o in log["operators"] if o["text"] == text), None)
'''


def test_new_object_make_clip_regenerate_undo_then_generate(bpy_version, extension_zip, tiny_video_models, disc_masks,
                                                             tmp_path):
    """Make Clip (target New Object): a 16-frame movie strip named after the prompt at the scene's
    start, the settings remember it, the status line names model, seed and seconds; Regenerate
    makes seed + 1's on the next channel, and one undo takes it (strip and settings) back; the
    panel's Generate then makes a new object with one AM_ key per frame of the clip."""
    masks = disc_masks
    script = PRELUDE.format(zip=extension_zip) + VIDEO_PRELUDE + PROMPT_PRELUDE + f'''
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
scene.frame_start, scene.frame_end = 5, 40
prefs.models_dir = {str(tiny_video_models)!r}
settings.source, settings.target, settings.prompt = "PROMPT", "NEW", {PROMPT!r}
settings.prompt_seed, settings.masks = 3, {str(masks)!r}
out = {{}}
log = draw_panel()
out["before_panel"] = {{"make": panel_button(log, "Make Clip"), "regenerate": panel_button(log, "Regenerate"),
                       "generate": panel_button(log, "Generate"), "labels": log["labels"],
                       "problems": log["problems"]}}
make = out["before_panel"]["make"]["props"]
before = scene_state()
status, error = call(bpy.ops.actionmesh.make_clip, **make)
first = scene_state()
out["first"] = dict(status=status, error=error, line=state.status, strips=first["strips"], clip=first["clip"],
                    same=dict(before, strips=None, clip=None) == dict(first, strips=None, clip=None))
log = draw_panel()
out["after_panel"] = {{"regenerate": panel_button(log, "Regenerate"), "generate": panel_button(log, "Generate"),
                      "labels": log["labels"], "problems": log["problems"]}}
bpy.ops.ed.undo_push(message="before Regenerate")
# EXEC_DEFAULT with undo=True: the undo push a click in the UI gets.
status, error = call(lambda **kw: bpy.ops.actionmesh.make_clip("EXEC_DEFAULT", True, **kw),
                     **out["after_panel"]["regenerate"]["props"])
second = scene_state()
out["second"] = dict(status=status, error=error, line=state.status, strips=second["strips"], clip=second["clip"])
bpy.ops.ed.undo()
out["undone"] = scene_state() == first
settings = bpy.context.scene.actionmesh
log = draw_panel()
generate = panel_button(log, "Generate")
out["generate_props"] = generate
before = counts()
status, error = call(getattr(bpy.ops.actionmesh, generate["idname"].split(".")[1]), **generate["props"], {FAST})
new = sorted(set(counts()["objects"]) - set(before["objects"]))
obj = bpy.data.objects[new[0]] if len(new) == 1 else None
out["generated"] = dict(status=status, error=error, new=new, line=state.status,
                        keys=[k.name for k in obj.data.shape_keys.key_blocks] if obj else None,
                        frames=key_frames(obj) if obj else None)
result(**out)
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    panel = r["before_panel"]
    assert panel["problems"] == [], panel["problems"]
    assert panel["make"] and panel["regenerate"] is None and not panel["generate"]["enabled"], panel
    assert any("clip comes first" in label for label in panel["labels"]), panel["labels"]
    assert panel["make"]["props"]["prompt"] == PROMPT and panel["make"]["props"]["seed"] == 3

    first = r["first"]
    assert first["status"] == ["FINISHED"], first["error"]
    assert first["same"], "Make Clip changes only the Sequencer and the prompt's settings"
    assert len(first["strips"]) == 1
    name, kind, channel, start, duration, path = first["strips"][0]
    assert (name, kind, channel, start, duration) == (PROMPT, "MOVIE", 1, 5, 16), first["strips"]
    assert path.endswith("a_red_dragon_flapping_its_wings_s3.mp4") and path == first["clip"][0]
    assert first["clip"][1:] == ["", "", 3]
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers, seed 3" in first["line"] and "the model took" in first["line"]
    assert first["line"].endswith(" s"), first["line"]

    after = r["after_panel"]
    assert after["problems"] == [] and after["generate"]["enabled"], after
    assert after["regenerate"]["props"]["regenerate"] is True
    assert any(label.endswith("_s3.mp4") for label in after["labels"]), after["labels"]

    second = r["second"]
    assert second["status"] == ["FINISHED"], second["error"]
    assert second["clip"][0].endswith("_s4.mp4") and second["clip"][3] == 4
    assert [s[2] for s in second["strips"]] == [1, 2], "the next clip goes on the next free channel"
    assert "seed 4" in second["line"]
    assert r["undone"], "one undo takes the regenerated clip's strip and settings back"

    generate = r["generate_props"]
    assert generate["idname"] == "actionmesh.generate_from_video"
    assert generate["props"]["source"] == "FILE" and generate["props"]["input"] == first["clip"][0]
    gen = r["generated"]
    assert gen["status"] == ["FINISHED"], gen["error"]
    assert gen["new"] == ["a_red_dragon_flapping_its_wings_s3"], gen["new"]
    assert gen["keys"] == ["Basis"] + [f"AM_{t:03d}" for t in range(16)]
    # The clip's 16 fps in a 24 fps scene, from the scene's start.
    assert gen["frames"][:3] == [5, 6.5, 8], gen["frames"]


def test_active_mesh_first_frame_render_then_fit(bpy_version, extension_zip, tiny_video_models, disc_masks, tmp_path):
    """Make Clip (target Active Mesh) renders the mesh as view.png, through a temporary framing
    camera without a scene camera, and through the scene camera with one (its camera.json then
    projects as Blender's own view does), leaving render settings, camera, frame, selection and
    data as they were; the image-to-video model continues it. The panel's Generate fits the mesh
    to the clip through the render's camera: AM_ keys on the mesh."""
    masks = disc_masks
    script = PRELUDE.format(zip=extension_zip) + VIDEO_PRELUDE + PROMPT_PRELUDE + f'''
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector
scene = bpy.context.scene
scene.frame_start, scene.frame_end, scene.frame_current = 1, 30, 7
scene.render.resolution_x, scene.render.resolution_y = 400, 300
prefs.models_dir = {str(tiny_video_models)!r}
bpy.ops.mesh.primitive_monkey_add(size=2.0, location=(0.5, 0.0, 0.2))
mesh = bpy.context.active_object
mesh.name = "Suzanne"
red = bpy.data.materials.new("Red")
red.diffuse_color = (0.8, 0.1, 0.1, 1.0)
mesh.data.materials.append(red)
mesh.shape_key_add(name="Basis")   # a rest key and another key: the render shows the rest shape
mesh.shape_key_add(name="Smile").value = 1.0
settings.source, settings.target, settings.prompt = "PROMPT", "ACTIVE", {PROMPT!r}
settings.method, settings.masks = "fit", {str(masks)!r}
out = {{}}

def make(**extra):
    props = dict(panel_button(draw_panel(), "Make Clip")["props"], render_size=128, **extra)
    before = scene_state()
    status, error = call(bpy.ops.actionmesh.make_clip, **props)
    after = scene_state()
    folder = os.path.dirname(settings.prompt_clip)
    return dict(status=status, error=error, line=state.status, strips=after["strips"], clip=after["clip"],
                same=dict(before, strips=None, clip=None) == dict(after, strips=None, clip=None),
                diff={{k: [str(before[k]), str(after[k])] for k in before if before[k] != after[k]}}, view=os.path.join(folder, "view.png"),
                camera=json.loads(open(settings.prompt_camera).read()) if settings.prompt_camera else None)

out["framing"] = make()
cam = bpy.data.objects.new("Shot", bpy.data.cameras.new("Shot"))
scene.collection.objects.link(cam)
cam.location = (0.8, -7.0, 1.2)
cam.rotation_euler = (1.45, 0.0, 0.05)
scene.camera = cam
bpy.context.view_layer.objects.active = mesh
out["scene_camera"] = make(regenerate=True)
# The scene camera's camera.json: Blender's view of the mesh's points, in the file's Y-up coordinates.
video = importlib.import_module(PKG + ".operators.video")
cameras = importlib.import_module(PKG + ".cameras")
points = np.array([list(mesh.matrix_world @ v.co) for v in list(mesh.data.vertices)[::40]])
uv = cameras.project(out["scene_camera"]["camera"], points @ video.Z_UP_TO_Y_UP.T)
k = out["scene_camera"]["camera"]["intrinsics"]
err = []
for p, (u, v) in zip(points, uv):
    ndc = world_to_camera_view(scene, cam, Vector(p))
    err.append(max(abs(ndc.x * k["width"] - 0.5 - u), abs((1 - ndc.y) * k["height"] - 0.5 - v)))
out["projection_error"] = max(err)

generate = panel_button(draw_panel(), "Generate")
out["generate_props"] = generate
status, error = call(getattr(bpy.ops.actionmesh, generate["idname"].split(".")[1]), **generate["props"])
keys = [k.name for k in mesh.data.shape_keys.key_blocks]
out["fit"] = dict(status=status, error=error, line=state.status, keys=keys,
                  moved=float(np.abs(generated_offsets(mesh)).max()) if "AM_000" in keys else 0.0)
result(**out)
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    for run, seen in (("framing", "a framing camera"), ("scene_camera", "the scene camera 'Shot'")):
        made = r[run]
        assert made["status"] == ["FINISHED"], (run, made["error"])
        assert made["same"], (run, {k: v for k, v in made["diff"].items() if k not in ("strips", "clip")})
        assert f"continuing 'Suzanne' seen by {seen}" in made["line"], made["line"]
        assert "Wan-AI/Wan2.2-TI2V-5B-Diffusers, seed" in made["line"], made["line"]
        assert made["clip"][2] == "Suzanne" and made["clip"][1].endswith("camera.json")
        view = np.asarray(Image.open(made["view"]))
        # The scene's 4:3 (400x300), 128 pixels wide, through either camera.
        assert view.shape == (96, 128, 4), view.shape
        covered = (view[..., 3] > 0).mean()
        print(f"blender {bpy_version} {run}: the mesh covers {covered:.0%} of view.png")
        assert 0.05 < covered < 0.95, covered
        # The mesh shows its own colour (the material's red), not Workbench's flat grey.
        rgb = view[view[..., 3] > 0][:, :3].astype(float).mean(axis=0)
        assert rgb[0] > 1.5 * rgb[1], rgb
        assert made["camera"]["intrinsics"]["width"] == 128
    assert [s[2] for s in r["scene_camera"]["strips"]] == [1, 2]
    assert r["scene_camera"]["clip"][3] == 1, "Regenerate: the last clip's seed + 1"
    assert r["projection_error"] < 1e-3, r["projection_error"]

    generate = r["generate_props"]
    assert generate["idname"] == "actionmesh.animate_from_video"
    assert generate["props"]["camera"] == "FILE" and generate["props"]["camera_file"] == r["scene_camera"]["clip"][1]
    fit = r["fit"]
    assert fit["status"] == ["FINISHED"], fit["error"]
    assert fit["keys"] == ["Basis", "Smile"] + [f"AM_{t:03d}" for t in range(16)], fit["keys"]
    assert fit["moved"] > 0


def test_bad_input_refused_with_its_message_and_nothing_changed(bpy_version, extension_zip, tiny_video_models,
                                                                 tmp_path):
    """An empty prompt (refused before the backend), Active Mesh with no mesh selected or a mesh
    without faces, a scene camera that does not see the mesh, the video models missing (the
    backend's message with the download command) and a prompt longer than the text encoder reads:
    each its own message, no strip, no keys, no clip remembered, the scene as it was."""
    empty = tmp_path / "no_models"
    empty.mkdir()
    long_prompt = " ".join(["dragon"] * 600)
    script = PRELUDE.format(zip=extension_zip) + VIDEO_PRELUDE + PROMPT_PRELUDE + f'''
scene = bpy.context.scene
prefs.models_dir = {str(tiny_video_models)!r}
settings.source = "PROMPT"
report = {{}}
before = scene_state()

def run(name, **kw):
    status, error = call(bpy.ops.actionmesh.make_clip, **kw)
    now = scene_state()
    report[name] = [status, error, now == before, backend_started()]

def backend_started():
    return session.backend_pid() is not None

run("empty", prompt="   ")
run("no_mesh", prompt={PROMPT!r}, target="ACTIVE")
verts = bpy.data.meshes.new("Dots")
verts.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [])
dots = bpy.data.objects.new("Dots", verts)
scene.collection.objects.link(dots)
bpy.context.view_layer.objects.active = dots
before = scene_state()
run("no_faces", prompt={PROMPT!r}, target="ACTIVE")
bpy.ops.mesh.primitive_cube_add(location=(0, 0, 0))
cam = bpy.data.objects.new("Away", bpy.data.cameras.new("Away"))
scene.collection.objects.link(cam)
cam.location, cam.rotation_euler = (0, -8, 0), (-1.57, 0, 0)   # looking away from the cube
scene.camera = cam
before = scene_state()
run("not_in_view", prompt={PROMPT!r}, target="ACTIVE", render_size=64)
run("no_models", prompt={PROMPT!r}, models_dir={str(empty)!r})
run("too_long", prompt={long_prompt!r})
result(**report)
'''
    r = run_blender(script, bpy_version, tmp_path=tmp_path)
    for name, (status, error, unchanged, _) in r.items():
        assert status == ["ERROR"], (name, status)
        assert unchanged, f"{name} changed the scene ({error})"
    assert "prompt is empty" in r["empty"][1] and not r["empty"][3], "refused before the backend starts"
    assert "select the mesh" in r["no_mesh"][1]
    assert "Mesh 'Dots' has no faces" in r["no_faces"][1]
    assert "not in view of the scene camera 'Away'" in r["not_in_view"][1]
    no_models = r["no_models"][1]
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in no_models and "models download wan2.1-t2v-1.3b" in no_models, \
        no_models
    assert "[missing_model]" in no_models
    assert "tokens" in r["too_long"][1] and "shorten it" in r["too_long"][1] and "[bad_input]" in r["too_long"][1]
