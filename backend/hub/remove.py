"""Removing a downloaded model: only its files, only inside the chosen store.

- A models folder: the registry's files of that model under DIR/<org>/<name>/, the download
  metadata and interrupted-download leftovers huggingface_hub keeps for them under
  DIR/<org>/<name>/.cache/huggingface/, then the folders this leaves empty (up to DIR, never DIR
  itself). Any other file a person put there stays, and so does its folder.
- The hub cache: the model's repository folder <cache>/models--<org>--<name>/ as a whole (blobs,
  snapshots, refs): huggingface_hub's layout keeps one repository per folder, so that folder is
  the model and nothing else.

Anything that would resolve outside the store's root (a symlinked org or repository folder, a
file that is a link to elsewhere is only unlinked, never followed) is refused or left alone:
a remove never deletes what it did not find inside the folder it was pointed at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List

from ..errors import BadInput
from .registry import ModelSpec
from .store import HubCache, ModelsFolder, ModelStore


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _lexically_inside(path: Path, root: Path) -> bool:
    """Inside `root` by its name alone (for links, which are unlinked and never followed)."""
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
        return True
    except ValueError:
        return False


def _prune_empty(folder: Path, stop: Path) -> None:
    """Removes `folder` and its parents while they are empty, never `stop` or above it."""
    folder, stop = Path(os.path.abspath(folder)), Path(os.path.abspath(stop))
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return
        folder = folder.parent


def _remove_from_models_folder(spec: ModelSpec, store: ModelsFolder) -> List[str]:
    target = store.target(spec)
    if not target.exists() and not target.is_symlink():
        return []
    if target.is_symlink() or not _inside(target, store.root):
        raise BadInput(f"refusing to remove {spec.repo_id}: {target} is a link or lies outside the models folder "
                       f"{store.root}; remove it by hand")
    removed = []
    meta = target / ".cache" / "huggingface" / "download"
    candidates = []
    for rel in spec.files:
        candidates += [target / rel, meta / (rel + ".metadata"), meta / (rel + ".lock")]
    candidates += list(store.incomplete_files(spec))
    for path in candidates:
        if not (path.is_file() or path.is_symlink()):
            continue
        # A link is unlinked (never followed); a real file must be inside the model's folder.
        if not (_lexically_inside(path, target) if path.is_symlink() else _inside(path, target)):
            continue
        path.unlink()
        removed.append(str(path.relative_to(target)))
    # Folders the removal emptied: the files' own folders, .cache/huggingface/..., the model, its org.
    folders = sorted({p.parent for p in candidates}, key=lambda p: len(p.parts), reverse=True)
    for folder in folders:
        _prune_empty(folder, store.root)
    _prune_empty(target, store.root)
    return removed


def _remove_from_hub_cache(spec: ModelSpec, store: HubCache) -> List[str]:
    repo = store.repo_folder(spec)
    if not repo.exists() and not repo.is_symlink():
        return []
    if repo.is_symlink() or not _inside(repo, store.root) or repo.resolve() == store.root.resolve():
        raise BadInput(f"refusing to remove {spec.repo_id}: {repo} is a link or lies outside the hub cache "
                       f"{store.root}; remove it by hand")
    removed = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() or p.is_symlink())
    shutil.rmtree(repo)  # rmtree never follows links: a snapshot link to a blob is only unlinked
    return removed


def remove_model(spec: ModelSpec, store: ModelStore) -> dict:
    """Deletes `spec`'s files from `store` (see the module docstring); returns what was removed."""
    if isinstance(store, HubCache):
        removed, where = _remove_from_hub_cache(spec, store), store.repo_folder(spec)
    elif isinstance(store, ModelsFolder):
        removed, where = _remove_from_models_folder(spec, store), store.target(spec)
    else:
        raise BadInput(f"cannot remove models from {store.describe()}")
    return dict(model=spec.name, repo_id=spec.repo_id, folder=str(where), removed=removed,
                state=store.status(spec).state)


__all__ = ["remove_model"]
