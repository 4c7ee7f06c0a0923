# SPDX-License-Identifier: GPL-3.0-or-later
"""Scene settings (saved with the .blend) and transient job state (on the WindowManager)."""

import bpy

SPACE_ITEMS = [
    ("LOCAL", "Object's Own Coordinates",
     "The sequence files share the mesh data's coordinates (e.g. frames exported like the reference, or "
     "imported with the OBJ importer, which keeps file coordinates and rotates the object)"),
    ("WORLD_Y_UP", "Scene, Y Up Files",
     "The files are Y-up (glTF, most OBJ/PLY) and match the object as placed in the scene"),
    ("WORLD_Z_UP", "Scene, Z Up Files", "The files are in Blender's scene coordinates (Z up)"),
]

METHOD_ITEMS = [
    ("learned-optimize", "Learned + Optimise", "The learned Stage II model's prediction, refined by optimisation where that "
     "fits better (optimisation alone when the Stage II weights are not installed)"),
    ("learned", "Learned", "One forward pass of the learned Stage II model: fastest (needs the Stage II weights)"),
    ("optimize", "Optimise", "Non-rigid registration, frame to frame, as rigid as possible (no weights needed)"),
]
# The operator's default: whatever the add-on preference says, so scripts and the panel agree.
OPERATOR_METHOD_ITEMS = [("PREFERENCE", "From Preferences", "The method chosen in the add-on's preferences")] \
    + METHOD_ITEMS


# Video operators (operators/video.py) and the panel's choices.
VIDEO_SOURCE_ITEMS = [
    ("STRIP", "Movie Strip", "The Sequencer's active movie strip (its visible frames, from its own start frame)"),
    ("FILE", "Movie File", "A movie file (mp4, mov, avi, mkv, webm, ...)"),
    ("FOLDER", "Image Folder", "A folder of PNG/JPG frames in name order (RGBA frames keep their alpha as the mask)"),
]
PANEL_SOURCE_ITEMS = VIDEO_SOURCE_ITEMS + [
    ("SEQUENCE", "Mesh Sequence", "A folder with one mesh per frame, registered onto the active mesh"),
    ("OBJECT", "Animated Object", "Another object's animation, rendered by Blender, transferred to the active mesh"),
    ("PROMPT", "Prompt", "A video model makes a clip of the prompt (for Active Mesh: continuing a render of the mesh); "
     "judge it in the Sequencer, then Generate from it"),
]
TARGET_ITEMS = [
    ("NEW", "New Object", "Generate a new object: the mesh of the clip's first frame, animated"),
    ("ACTIVE", "Active Mesh", "Animate the selected mesh (UVs, materials, modifiers and other keys are kept)"),
]
VIDEO_METHOD_ITEMS = [
    ("learned-fit", "Learned + Fit", "The learned models' motion refined by fitting to the clip (fitting alone, with a "
     "warning, when the models are not stored)"),
    ("learned", "Learned", "ActionMesh's learned models only (needs the models)"),
    ("fit", "Fit", "Fit the mesh to the clip's silhouettes and optical flow, on the CPU, no models needed"),
]
QUALITY_ITEMS = [
    ("DEFAULT", "Default", "The release's settings (100 / 30 denoising steps)"),
    ("FAST", "Fast", "The release's fast preset (50 / 15 steps)"),
]
MEMORY_ITEMS = [
    ("AUTO", "Automatic", "The whole guidance batch at once (fastest)"),
    ("LOW_VRAM", "Low VRAM", "The large transformers held in bf16, the guidance pair in two passes, smaller "
                             "chunks: about 7 GiB for 16 frames (an 8 GB card), a little slower"),
]
CAMERA_ITEMS = [
    ("SCENE", "Scene Camera", "The clip was filmed by the scene's camera: the mesh is seen as placed in the scene"),
    ("ESTIMATE", "Estimate", "Estimate the camera from the first frame's silhouette"),
]
# Operators also take a camera.json (what Make Clip writes for the render a prompt's clip continues).
OPERATOR_CAMERA_ITEMS = CAMERA_ITEMS + [
    ("FILE", "Camera File", "The camera of a camera.json (camera_file): the view the clip's first frame was rendered "
     "from"),
]
TRANSFER_CAMERA_ITEMS = [
    ("FRAMING", "Framing Camera", "A temporary camera that frames both objects"),
    ("SCENE", "Scene Camera", "Render through the scene's camera"),
]


class ActionMeshSettings(bpy.types.PropertyGroup):
    source: bpy.props.EnumProperty(name="Source", items=PANEL_SOURCE_ITEMS, default="STRIP")
    target: bpy.props.EnumProperty(name="Target", items=TARGET_ITEMS, default="NEW")
    # Named as the operators' and the backend's arguments are (`python -m backend register
    # --sequence`, `generate --input --frames --masks`), so a setting keeps its name from the panel
    # to the CLI. The movie file and the image folder are two settings only for their two file browsers.
    sequence: bpy.props.StringProperty(
        name="Mesh Sequence", subtype="DIR_PATH",
        description="Folder with one mesh per frame (obj, ply, stl, glb), in name order")
    space: bpy.props.EnumProperty(name="Coordinates", items=SPACE_ITEMS, default="LOCAL",
                                  description="Which coordinates the sequence files are in")
    input_file: bpy.props.StringProperty(name="Movie File", subtype="FILE_PATH")
    input_dir: bpy.props.StringProperty(name="Image Folder", subtype="DIR_PATH",
                                        description="Folder of PNG/JPG frames, in name order")
    masks: bpy.props.StringProperty(name="Masks", subtype="DIR_PATH",
                                        description="Optional: one mask image per frame (white = subject); empty: "
                                                    "the frames' alpha, else the background remover")
    motion_object: bpy.props.PointerProperty(name="Motion From", type=bpy.types.Object,
                                             description="The animated object whose motion the active mesh takes")
    use_strip_range: bpy.props.BoolProperty(name="Strip's Range", default=True,
                                            description="Use the strip's visible frames")
    start: bpy.props.IntProperty(name="Start", default=0, min=0, description="First frame of the clip (0 = its first)")
    frames: bpy.props.IntProperty(name="Frames", default=0, min=0, description="How many frames; 0: to the end")
    stride: bpy.props.IntProperty(name="Stride", default=1, min=1, description="Use every N-th frame")
    seed: bpy.props.IntProperty(name="Seed", default=44, min=0)
    method: bpy.props.EnumProperty(name="Method", items=VIDEO_METHOD_ITEMS, default="learned-fit")
    quality: bpy.props.EnumProperty(name="Quality", items=QUALITY_ITEMS, default="DEFAULT")
    memory: bpy.props.EnumProperty(name="Memory", items=MEMORY_ITEMS, default="AUTO")
    camera: bpy.props.EnumProperty(name="Camera", items=CAMERA_ITEMS, default="SCENE")
    render_camera: bpy.props.EnumProperty(name="Render Camera", items=TRANSFER_CAMERA_ITEMS, default="FRAMING")
    stage1_meshes: bpy.props.BoolProperty(name="Stage I Meshes", default=False,
                                          description="Also import each frame's Stage I shape, for inspection")
    # Source Prompt: `prompt` and `prompt_seed` are the backend's `prompt_video` prompt and seed
    # (Seed is the mesh job's). The clip's settings are what the last Make Clip made, for Generate
    # to read; Make Clip is the one to write them.
    prompt: bpy.props.StringProperty(name="Prompt", description="The subject and its motion, e.g. \"a red dragon "
                                                                "flapping its wings, side view\"")
    prompt_seed: bpy.props.IntProperty(name="Clip Seed", default=0, min=0,
                                       description="The video model's seed (Regenerate: this + 1); after Make Clip, "
                                                   "the seed of the clip")
    prompt_clip: bpy.props.StringProperty(name="Clip", subtype="FILE_PATH",
                                          description="The last clip made from the prompt (an .mp4)")
    prompt_camera: bpy.props.StringProperty(
        name="Clip Camera", subtype="FILE_PATH",
        description="Active Mesh: the camera.json of the view the clip's first frame was rendered from (empty: the "
                    "clip was made from the prompt alone)")
    prompt_object: bpy.props.StringProperty(name="Clip Object",
                                            description="Active Mesh: the mesh the clip's first frame shows")


class ActionMeshJobState(bpy.types.PropertyGroup):
    running: bpy.props.BoolProperty(default=False)
    progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0)
    status: bpy.props.StringProperty(default="")
    stage: bpy.props.StringProperty(default="")
    message: bpy.props.StringProperty(default="")
    seconds_left: bpy.props.FloatProperty(default=-1.0, description="Estimated time left; negative: unknown")
    last_error: bpy.props.StringProperty(default="")
