import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_harness import BPY_VERSIONS, SHARED  # noqa: E402


@pytest.fixture(params=sorted(BPY_VERSIONS), ids=lambda v: f"blender{v}")
def bpy_version(request):
    return request.param


@pytest.fixture
def shared_examples():
    path = SHARED / "examples"
    if not path.is_dir():
        pytest.skip(f"needs the shared example data at {path} (present in CI, absent in a user's clone)")
    return path
