"""`python -m backend bench register` runs end to end and its figures mean what they say."""

import json
import subprocess
import sys

from blender_harness import REPO


def test_bench_register_scores_methods_on_synthetic_sequences(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "backend", "bench", "register", "--frames", "3", "--sequences",
                           "creature,articulated", "--articulated", "1", "--methods", "none,optimize,learned",
                           "--baseline-frames", "0", "--weights", str(tmp_path), "--json", str(out)],
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
