"""Where downloaded models live, and whether each one is there whole.

Two places, never mixed in one call:

- the Hugging Face hub cache (the default), in huggingface_hub's own layout, so models another
  tool already downloaded are found and nothing is stored twice:
      <cache>/models--<org>--<name>/snapshots/<commit>/<file>   (refs/<branch> holds a commit)
  <cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub, as huggingface_hub
  resolves it.
- a models folder given with `--models-dir DIR`, laid out like the repositories themselves:
      DIR/<org>/<name>/<file>        e.g. DIR/facebook/ActionMesh/denoiser/model.safetensors
  which is what `huggingface_hub.snapshot_download(local_dir=DIR/<org>/<name>)` writes, and what
  a person copying a repository by hand would make.

A model is "ready" when every file it needs is present and passes `integrity.check_file`,
"missing" when none is (and no download of it was started), and "partial" otherwise: some files
absent, a truncated weights file, or an interrupted download (its `.incomplete` files).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..errors import BackendError
from .integrity import check_file
from .registry import ModelSpec, get_model

READY, PARTIAL, MISSING = "ready", "partial", "missing"
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub reads its boolean variables


def hub_cache_dir() -> Path:
    """The hub cache folder, resolved from the environment the way huggingface_hub does."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE asks every tool to stay off the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in TRUE_VALUES


@dataclass
class FileStatus:
    path: str  # inside the repository
    state: str  # "ok", "missing" or "corrupt"
    detail: str = ""


@dataclass
class ModelStatus:
    spec: ModelSpec
    state: str
    folder: Optional[Path]  # where the files are (or would go)
    revision: Optional[str]  # the commit found; None for a models folder (it records none)
    files: List[FileStatus]
    notes: List[str] = field(default_factory=list)

    def problem(self) -> str:
        """What is wrong, in one line ("" when ready)."""
        if self.state == READY:
            return ""
        if self.state == MISSING:
            return f"none of its {len(self.files)} files is present"
        parts = [f"{f.path} {f.detail or f.state}" for f in self.files if f.state != "ok"]
        return "; ".join(parts + self.notes)

    def to_dict(self) -> dict:
        spec = self.spec
        return dict(
            name=spec.name, repo_id=spec.repo_id, revision=spec.revision, found_revision=self.revision,
            state=self.state, required=spec.required, licence=spec.licence.name,
            commercial_use=spec.licence.commercial_use, size_bytes=spec.size_bytes,
            folder=str(self.folder) if self.folder else None, purpose=spec.purpose,
            files=[dict(path=f.path, state=f.state, detail=f.detail) for f in self.files], notes=self.notes,
        )


class ModelStore(ABC):
    """Base of the two layouts: `folder` finds a model's files, `status` checks them."""

    kind = ""

    def __init__(self, root: Path):
        self.root = Path(root)

    def describe(self) -> str:
        return f"{self.kind} {self.root}"

    @abstractmethod
    def folder(self, spec: ModelSpec) -> Optional[Path]:
        """The folder holding this model's files, None when there is none yet."""

    @abstractmethod
    def target(self, spec: ModelSpec) -> Path:
        """Where a download puts the model (what `folder` returns once it is there)."""

    def found_revision(self, spec: ModelSpec) -> Optional[str]:
        """The commit whose files `folder` holds; None where the layout records none."""
        return None

    @abstractmethod
    def incomplete_files(self, spec: ModelSpec) -> List[Path]:
        """Leftovers of an interrupted download (huggingface_hub names them *.incomplete)."""

    def status(self, spec: ModelSpec) -> ModelStatus:
        folder = self.folder(spec)
        files = []
        for rel in spec.files:
            path = folder / rel if folder is not None else None
            if path is None or not path.is_file():  # is_file follows links: a dangling one is missing
                files.append(FileStatus(rel, "missing"))
                continue
            problem = check_file(path)
            files.append(FileStatus(rel, "corrupt", problem) if problem else FileStatus(rel, "ok"))
        notes = []
        incomplete = self.incomplete_files(spec)
        if incomplete:
            notes.append(f"{len(incomplete)} interrupted download file(s) (run the download again to resume)")
        revision = self.found_revision(spec)
        if revision is not None and revision != spec.revision:
            notes.append(f"found revision {revision[:12]}, not the pinned {spec.revision[:12]}")
        present = [f for f in files if f.state != "missing"]
        # Every file whole is what counts; leftovers of an old interrupted attempt alone (the file was
        # completed later) are only a note.
        if all(f.state == "ok" for f in files):
            state = READY
        elif not present and not incomplete:
            state = MISSING
        else:
            state = PARTIAL
        return ModelStatus(spec, state, folder if folder is not None else self.target(spec), revision, files, notes)


class ModelsFolder(ModelStore):
    """`--models-dir DIR`: DIR/<org>/<name>/<file>."""

    kind = "models folder"

    def target(self, spec: ModelSpec) -> Path:
        return self.root / spec.org / spec.repo_name

    def folder(self, spec: ModelSpec) -> Optional[Path]:
        path = self.target(spec)
        return path if path.is_dir() else None

    def incomplete_files(self, spec: ModelSpec) -> List[Path]:
        # snapshot_download(local_dir=...) keeps partial files under <local_dir>/.cache/huggingface/.
        cache = self.target(spec) / ".cache" / "huggingface"
        return sorted(cache.rglob("*.incomplete")) if cache.is_dir() else []


class HubCache(ModelStore):
    """The huggingface_hub cache: <cache>/models--<org>--<name>/snapshots/<commit>/<file>."""

    kind = "hub cache"

    def repo_folder(self, spec: ModelSpec) -> Path:
        return self.root / f"models--{spec.org}--{spec.repo_name}"

    def target(self, spec: ModelSpec) -> Path:
        return self.repo_folder(spec) / "snapshots" / spec.revision

    def _ref(self, spec: ModelSpec, name: str = "main") -> Optional[str]:
        ref = self.repo_folder(spec) / "refs" / name
        try:
            return ref.read_text().strip() or None
        except OSError:
            return None

    def found_revision(self, spec: ModelSpec) -> Optional[str]:
        if self.target(spec).is_dir():
            return spec.revision
        main = self._ref(spec)
        if main and (self.repo_folder(spec) / "snapshots" / main).is_dir():
            return main
        return None

    def folder(self, spec: ModelSpec) -> Optional[Path]:
        # The pinned snapshot first; else whatever `main` pointed to when another tool downloaded it
        # (reported as a note by `status`: usable, but not the files our code was checked against).
        revision = self.found_revision(spec)
        return self.repo_folder(spec) / "snapshots" / revision if revision else None

    def incomplete_files(self, spec: ModelSpec) -> List[Path]:
        blobs = self.repo_folder(spec) / "blobs"
        return sorted(blobs.glob("*.incomplete")) if blobs.is_dir() else []


def open_store(models_dir: Optional[str] = None) -> ModelStore:
    """The models folder when one is given, else the hub cache."""
    if models_dir:
        return ModelsFolder(Path(models_dir).expanduser())
    return HubCache(hub_cache_dir())


class MissingModel(BackendError):
    """A model the job needs is not in the store whole; the message says how to fetch it."""

    code = "missing_model"


def not_ready_message(status: ModelStatus, models_dir: Optional[str]) -> str:
    """What is wrong with a model that is not ready, its licence and size, and the fetch command."""
    spec = status.spec
    return (f"{spec.repo_id} is {status.state} (licence: {spec.licence.name}; about {spec.size_text()}): "
            f"{status.problem()}. Fetch it with: {spec.fetch_command(models_dir)}")


def require(name: str, models_dir: Optional[str] = None) -> Path:
    """The folder of model `name` when it is whole; MissingModel (with not_ready_message) otherwise."""
    status = open_store(models_dir).status(get_model(name))
    if status.state != READY:
        raise MissingModel(not_ready_message(status, models_dir))
    return status.folder
