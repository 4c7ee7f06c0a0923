"""Pipelines orchestrate: read inputs, call a model or solver, write outputs. No math lives here.

Each pipeline is a plain function taking its arguments and a JobContext; COMMANDS maps the
protocol's command names to them so the CLI and the service run exactly the same code.
"""

from .batch import run_batch
from .check import run_check
from .generate import run_generate
from .models import models_download, models_remove, models_status, models_verify
from .prompt_video import make_clip
from .reconstruct import run_reconstruct
from .register import run_register
from .rig import run_rig

COMMANDS = {"register": run_register, "reconstruct": run_reconstruct, "generate": run_generate,
            "models_status": models_status, "models_verify": models_verify, "models_download": models_download,
            "models_remove": models_remove, "check": run_check, "rig": run_rig, "prompt_video": make_clip,
            "batch": run_batch}
