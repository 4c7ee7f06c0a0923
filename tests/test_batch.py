"""`python -m backend batch` (issue 24): a manifest of clips run through the same functions as
`generate`, `register` and `rig`, on a local Ray cluster; rows published atomically and readable by
the other users of a shared folder; resumable; progress for the terminal and the service."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from backend_cli import REPO, run_backend


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_published_result_has_the_permissions_mkdir_and_open_give(tmp_path, umask):
    """generate's staged folder (mkdtemp: 0700) and atomically written files (mkstemp: 0600) are
    published as a plain mkdir and open would leave them: readable by others under umask 022."""
    from backend.io.mesh import write_mesh
    from backend.jobs import JobContext
    from backend.pipelines.generate.outputs import staged_output

    old = os.umask(umask)
    try:
        out = tmp_path / "result"
        with staged_output(JobContext(), out) as staged:
            write_mesh(staged.tmp / "anchor.glb", np.eye(3), np.array([[0, 1, 2]]))
            (staged.tmp / "sub").mkdir()
            staged.publish({"input": {}, "kind": "test"})
    finally:
        os.umask(old)
    assert _mode(out) == 0o777 & ~umask and _mode(out / "sub") == 0o777 & ~umask
    assert _mode(out / "anchor.glb") == _mode(out / "report.json") == 0o666 & ~umask
    if umask == 0o022:
        assert all(_mode(p) & stat.S_IROTH for p in (out, out / "anchor.glb", out / "report.json"))
