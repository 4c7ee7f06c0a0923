"""`python -m backend bench extract` runs end to end (it once imported a module that had moved) and
prints, for every shape, the dense and coarse-to-fine figures side by side."""

from __future__ import annotations

import json

from backend_cli import run_backend


def test_bench_extract_compares_dense_and_coarse_to_fine(tmp_path):
    path = tmp_path / "figures" / "extract.json"
    proc = run_backend("bench", "extract", "--shapes", "plate,rod,handle,creature,vae-spider",
                       "--resolutions", "64", "--scale-model", "64", "--steep", "100",
                       "--vae-resolutions", "32", "--json", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(path.read_text())
    assert [row["field"] for row in rows] == [
        "plate", "rod", "handle", "creature", "plate @512", "rod @512", "handle @512",
        "plate x100 @512", "rod x100 @512", "handle x100 @512", "vae-spider"]
    for row in rows:
        assert row["c2f_queries"] <= row["dense_queries"] and row["identical"], row
        assert row["dense_components"] == row["c2f_components"] == row["matched"] > 0, row
        assert row["chamfer_cells"] == 0.0 and row["hausdorff_cells"] == 0.0, row
    # The scale model of the release's grid: 8^3 -> 64 stands for 32^3 -> 512, thin parts resolved.
    scaled = [row for row in rows if row["field"].endswith("@512")]
    assert all(row["coarse_resolution"] == 4 and row["resolved"] for row in scaled)
    header = proc.stdout.splitlines()[0]
    assert all(column in header for column in ("dense q", "c2f q", "dense s", "c2f s", "comps", "chamfer", "worst"))
    assert "DIFFERS" not in proc.stderr
