"""ActionMesh backend: the torch side, run as `python -m backend <command>`.

The Blender add-on never imports this package; it starts `python -m backend serve` as a
subprocess and talks to it over the JSON-lines protocol in `backend.protocol`.
"""

__version__ = "0.1.0"
