"""`python -m backend bench register` runs end to end and its figures mean what they say."""

import json
import subprocess
import sys

from blender_harness import REPO


def test_bench_register_scores_methods_on_synthetic_sequences(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "backend", "bench", "register", "--frames", "3", "--sequences",
                           "creature,articulated", "--articulated", "1", "--methods", "none,optimize,learned",
                           "--baseline-frames", "0", "--weights-dir", str(tmp_path), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "vert err" in proc.stdout and "CD-M" in proc.stdout
    result = json.loads(out.read_text())
    assert [s["name"] for s in result["sequences"]] == ["creature", "articulated"]
    for seq in result["sequences"]:
        rows = seq["methods"]
        # Registration beats leaving the reference at rest, by vertex error and by CD-M.
        assert rows["optimize"]["vertex_error"] < 0.5 * rows["none"]["vertex_error"], seq
        assert rows["optimize"]["cd_m"] < rows["none"]["cd_m"], seq
        # An empty weights folder: the learned row says why it did not run.
        assert "not installed" in rows["learned"]["skipped"]
    assert result["summary"]["optimize"]["sequences"] == 2


def test_bench_register_rows_of_real_world_frames(tmp_path, shared_examples):
    """The rows of issue 9: a marching-cubes re-mesh wound inward and a real MD2 character."""
    from test_real_world_frames import _md2_or_skip

    _md2_or_skip()
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "backend", "bench", "register", "--frames", "4", "--sequences",
                           "panda-mc-inward,sydney", "--methods", "none,optimize", "--baseline-frames", "0",
                           "--panda", str(shared_examples / "panda" / "panda.glb"), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [s["name"] for s in result["sequences"]] == ["panda-mc-inward", "sydney"]
    for seq in result["sequences"]:
        rows = seq["methods"]
        assert rows["optimize"]["vertex_error"] < rows["none"]["vertex_error"], seq
        assert rows["none"]["seconds"] > 0  # the time to read the files: the floor of every method
    rw = result["summary"]["real_world_error_ratio_vs_none"]
    assert rw["worse_than_none"] == [] and rw["optimize"] < 1.0
    assert result["summary"]["remeshed_panda_optimize_seconds"]["ref_vertices"] == 9606
    assert "target <= 0.6x" in proc.stdout and "target <= 8 s" in proc.stdout
