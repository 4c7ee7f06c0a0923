"""The released models the pipeline needs: which (registry), where and whether whole (store),
how to fetch them (download), small stand-ins in the same layouts (tiny), and their full-size
architectures without weights (architectures).

Importing this package imports neither torch nor huggingface_hub; the modules that need them
import them when called, so `models list` stays fast and works before the heavy installs.
"""

from .registry import MODELS, ModelSpec, get_model
from .store import MISSING, PARTIAL, READY, HubCache, MissingModel, ModelsFolder, open_store, require

__all__ = ["HubCache", "MISSING", "MODELS", "MissingModel", "ModelSpec", "ModelsFolder", "PARTIAL", "READY",
           "get_model", "open_store", "require"]
