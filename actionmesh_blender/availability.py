# SPDX-License-Identifier: GPL-3.0-or-later
"""Cheap checks the panel can afford on every redraw (stdlib only): are the learned models
stored? Only folder existence is looked at; the backend checks the files themselves when a job
starts and names what is missing."""

from __future__ import annotations

import os
from pathlib import Path

# The learned pipeline's models (backend/pipelines/generate/inputs.py LEARNED_MODELS, their repositories in
# backend/hub/registry.py): org/name on the Hugging Face hub. The add-on never imports the backend, so
# this is a copy; tests/test_fit.py keeps the two equal.
LEARNED_REPOS = ("facebook/ActionMesh", "VAST-AI/TripoSG", "facebook/dinov2-large")


def hub_cache() -> Path:
    """Where huggingface_hub keeps its cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def missing_learned_models(models_dir: str = "") -> list[str]:
    """The learned models with no folder in `models_dir` (DIR/<org>/<name>) or, without one, in
    the hub cache (models--<org>--<name>/snapshots)."""
    missing = []
    for repo in LEARNED_REPOS:
        if models_dir:
            found = (Path(models_dir) / repo).is_dir()
        else:
            snapshots = hub_cache() / ("models--" + repo.replace("/", "--")) / "snapshots"
            found = snapshots.is_dir() and any(snapshots.iterdir())
        if not found:
            missing.append(repo)
    return missing


def learned_unavailable_reason(models_dir: str = "") -> str:
    """Empty when the learned models seem stored, else one line saying why not."""
    missing = missing_learned_models(models_dir)
    if not missing:
        return ""
    where = f"in {models_dir}" if models_dir else "in the Hugging Face cache"
    return f"Learned models not found {where}: {', '.join(missing)}"
