"""Coarse-to-fine extraction keeps the thin parts the dense grid keeps (issue 19, item 3).

Shapes from backend.bench.extract: a 0.5 %-thick plate, a 1 %-radius rod, a torus with a thin
handle, and the tiny VAE's field for real shapes. The release extracts at 512, where a dense grid
is 135M queries (`python -m backend bench extract --resolutions 512` compares there, 20-40 s a
shape); here the release's grid is scaled to 128 (`scale_model`: thin sizes x4, coarse grid 8^3
instead of 32^3), so each thin part is as many fine and coarse cells across as at 512.
"""

from __future__ import annotations


import numpy as np
import pytest

from blender_harness import missing_data

from backend.bench.extract import (DEFAULT_PANDA, THIN, compare, mesh_surface, resolves, scale_model,
                                   spider_surface, thin_shapes, trustworthy, vae_field)
from backend.geometry.extract import DEFAULT_BAND, DEFAULT_COARSE_RESOLUTION

RES = 128
THIN_SCALE, COARSE = scale_model(RES)
VAE_RES = 64  # the tiny model set's own extraction resolution; a dense 64^3 of the VAE is ~7 s


def _kept(row: dict, components: int | None = None) -> None:
    assert trustworthy(row), row
    if components is not None:
        assert row["dense_components"] == components, row


def test_scale_model_is_the_release_grid():
    assert (THIN_SCALE, COARSE) == (4.0, 8)
    assert RES // COARSE == 512 // DEFAULT_COARSE_RESOLUTION  # as many levels, each the same band
    for shape in thin_shapes(THIN_SCALE).values():
        assert resolves(shape.thinnest, RES), shape.name  # the dense grid itself keeps them
    # The release's grid keeps the real ones; at 128 only the rod is thick enough.
    real = thin_shapes()
    assert all(resolves(shape.thinnest, 512) for shape in real.values())
    assert [name for name, shape in real.items() if resolves(shape.thinnest, RES)] == ["rod"]


@pytest.mark.parametrize("name", THIN)
def test_thin_part_kept_at_release_scale(name):
    shape = thin_shapes(THIN_SCALE)[name]
    row = compare(name, shape.sdf, RES, coarse_resolution=COARSE, thinnest=shape.thinnest)
    _kept(row, components=1)
    # An exact distance is 1-Lipschitz: extract.py's docstring proves the mesh the dense one.
    assert row["identical"] and row["chamfer_cells"] == 0.0, row
    assert row["c2f_queries"] < 0.1 * row["dense_queries"], row


@pytest.mark.parametrize("name", THIN)
def test_unresolved_thin_part_breaks_up_alike(name):
    """The real sizes at 128 and the default settings: thinner than the grid resolves (but the rod),
    so the dense mesh is in pieces or has holes; ours must be the same pieces."""
    shape = thin_shapes()[name]
    row = compare(name, shape.sdf, RES, thinnest=shape.thinnest)
    assert row["coarse_resolution"] == DEFAULT_COARSE_RESOLUTION and row["band"] == DEFAULT_BAND
    _kept(row)
    assert row["identical"], row
    if name == "plate":  # 0.6 cells thick: the dense grid breaks it up
        assert row["dense_components"] > 10, row


@pytest.mark.parametrize("steepness", [4.0, 100.0])
@pytest.mark.parametrize("name", THIN)
def test_thin_part_kept_in_a_steeper_field(name, steepness):
    """A learned field is not a distance: TripoSG's logits are of the order of 100x as steep. With
    the band in field units, the release's grid lost plate pieces 15 cells wide and split the rod in
    3 at 32x, both in 5 at 100x; the band's steepness calibration keeps every thin part."""
    shape = thin_shapes(THIN_SCALE, steepness)[f"{name} x{steepness:g}"]
    row = compare(name, shape.sdf, RES, coarse_resolution=COARSE, thinnest=shape.thinnest)
    _kept(row, components=1)
    assert row["identical"], row


def test_steepness_is_measured_against_a_distance():
    from backend.geometry import extract_mesh

    shape = thin_shapes(THIN_SCALE)["plate"]
    distance = extract_mesh(shape.sdf, resolution=RES, coarse_resolution=COARSE)[2]
    steep = extract_mesh(lambda p: 100.0 * shape.sdf(p), resolution=RES, coarse_resolution=COARSE)[2]
    assert 0.85 < distance["steepness"] <= 1.0, distance["steepness"]
    assert steep["steepness"] == pytest.approx(100.0 * distance["steepness"], rel=1e-3)
    # Never narrower than band * h (a distance's band stays as it was), k-fold wider for k * f.
    assert distance["levels"][0]["band_value"] == pytest.approx(DEFAULT_BAND * 2 * 1.005 / COARSE)
    assert steep["levels"][0]["band_value"] == pytest.approx(
        DEFAULT_BAND * 2 * 1.005 / COARSE * steep["steepness"], rel=1e-5)


def test_steep_field_with_no_surface_on_the_coarse_grid():
    # The release's grid scaled to 64 (coarse 4^3: 125 points, 0.5 apart): the handle shape, thin
    # tube 0.08 and torus tube 0.12 across, holds none of them, so no edge crosses the surface and
    # the steepness comes from the edges nearest it. Before that, a field 100x a distance got a
    # band of 1.5 against values of 10 and more at every coarse point: nothing was refined.
    scale, coarse = scale_model(64)
    shape = thin_shapes(scale, steepness=100.0)["handle x100"]
    n = coarse + 1
    grid = np.stack(np.meshgrid(*[np.linspace(-1.005, 1.005, n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    assert (shape.sdf(grid) < 0).all()
    row = compare("handle x100", shape.sdf, 64, coarse_resolution=coarse, thinnest=shape.thinnest)
    _kept(row, components=1)
    assert row["identical"] and row["resolved"], row


@pytest.mark.parametrize("name", THIN)
def test_sign_changes_alone_lose_thin_parts(name):
    # The checks can fail: with no band only the cells whose corners change sign are refined, and
    # the parts the coarse 8^3 grid steps over are gone. For the handle the mean Chamfer stays under
    # a cell (0.76) while the handle itself, 22 cells from anything left, is missing.
    shape = thin_shapes(THIN_SCALE)[name]
    row = compare(name, shape.sdf, RES, coarse_resolution=COARSE, band=0.0, thinnest=shape.thinnest)
    assert not trustworthy(row) and row["hausdorff_cells"] > 10, row


# ---------------------------------------------------------------- the VAE's field


@pytest.fixture(scope="module")
def tiny_vae():
    import torch

    from backend.models.vae import ShapeVAE
    from backend.pipelines.reconstruct import default_weights_dir

    torch.manual_seed(0)
    return ShapeVAE.from_pretrained(default_weights_dir("tiny"), device="cpu")


def _check_vae_row(row: dict) -> None:
    _kept(row)
    assert row["dense_components"] > 0 and row["identical"], row
    assert row["c2f_queries"] < 0.7 * row["dense_queries"], row
    # Queries cost ~25 us each here: fewer of them is less time (measured 0.4-0.65 of dense).
    assert row["c2f_seconds"] < row["dense_seconds"], row


def test_vae_spider_field(tiny_vae):
    _check_vae_row(compare("vae-spider", vae_field(tiny_vae, spider_surface()), VAE_RES))


def test_vae_panda_field(tiny_vae):
    if not DEFAULT_PANDA.is_file():
        missing_data(f"needs the shared example data at {DEFAULT_PANDA} (present in CI, absent in a user's clone)")
    field = vae_field(tiny_vae, mesh_surface(DEFAULT_PANDA))
    assert np.isfinite(field(np.zeros((1, 3), np.float32))).all()
    _check_vae_row(compare("vae-panda", field, VAE_RES))
