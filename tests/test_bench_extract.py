"""`python -m backend bench extract` runs end to end (it once imported a module that had moved)."""

from __future__ import annotations

import json

from backend_cli import run_backend


def test_bench_extract_compares_dense_and_coarse_to_fine(tmp_path):
    path = tmp_path / "figures" / "extract.json"
    proc = run_backend("bench", "extract", "--resolutions", "32", "--vae-resolutions", "32", "--json", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(path.read_text())
    assert {row["field"] for row in rows} == {"analytic", "tiny-vae"}
    for row in rows:
        assert row["c2f_queries"] <= row["dense_queries"] and row["identical"], row
    assert "q ratio" in proc.stdout
