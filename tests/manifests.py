"""Checking a model's parameter layout against an official checkpoint's manifest (../shared/official)."""

import json

import pytest

from blender_harness import SHARED, missing_data

OFFICIAL = SHARED / "official"


def official_manifest(filename: str, key: str) -> dict:
    path = OFFICIAL / filename
    if not path.is_file():
        missing_data(f"needs the official parameter manifest at {path} (shared data, absent in a user's clone)")
    return json.loads(path.read_text())[key]


def assert_matches_manifest(model, official: dict) -> None:
    """Same names, shapes and order: the official safetensors then load strictly, and files diff cleanly."""
    ours = {name: list(t.shape) for name, t in model.state_dict().items()}
    assert sorted(ours.keys() - official.keys()) == []
    assert sorted(official.keys() - ours.keys()) == []
    assert ours == official
    assert list(ours) == list(official)
