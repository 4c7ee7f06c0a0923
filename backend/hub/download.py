"""Downloading a registered model at its pinned revision, with huggingface_hub.

`snapshot_download` with `allow_patterns` = exactly the files we need (no pickles, no remote code,
no README bulk) and `revision` = the pinned commit. It resumes: an interrupted run leaves
`*.incomplete` files that the next run continues. Progress events go to a callback (the CLI
prints them on stderr as JSON lines or plain lines); they count bytes on disk, so they work the
same whatever transfer backend huggingface_hub picks.

The access token (from --token, or HF_TOKEN, or the one `hf auth login` stored) goes to
huggingface_hub only: it is never part of an event, and every error message is scrubbed of it.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Optional

from ..errors import BackendError, BadInput, Unsupported
from .registry import ModelSpec, format_size
from .store import READY, ModelsFolder, ModelStatus, ModelStore, hub_offline

Emit = Callable[[dict], None]


class DownloadFailed(BackendError):
    """The hub could not be reached, refused access, or sent something incomplete."""

    code = "download_failed"


def redact(text: str, token: Optional[str]) -> str:
    """`text` with the token (if any) replaced, so no message or log line can carry it."""
    return text.replace(token, "***") if token else text


def announce(spec: ModelSpec) -> str:
    """What a person should know before the download starts: what, how big, under which licence."""
    return (f"{spec.repo_id} @ {spec.revision[:12]}: {len(spec.files)} files, about {spec.size_text()}, "
            f"licence: {spec.licence.describe()} <{spec.licence.url}>")


def check_licences(specs: Iterable[ModelSpec], accept_licence: bool) -> None:
    """Refuses (before anything is downloaded) when a non-commercial licence was not accepted."""
    pending = [s for s in specs if not s.licence.commercial_use]
    if pending and not accept_licence:
        names = "; ".join(f"{s.repo_id} ({s.licence.name}, about {s.size_text()}, {s.licence.url})" for s in pending)
        raise BadInput(f"{names}: non-commercial licence{'s' if len(pending) > 1 else ''}. Downloading means "
                       "accepting the terms: read them, then run the command again with --accept-licence")


def check_online(store: ModelStore, specs: Iterable[ModelSpec]) -> None:
    if hub_offline():
        targets = ", ".join(str(store.target(s)) for s in specs)
        raise Unsupported("downloads are turned off: HF_HUB_OFFLINE is set. Unset it (or run on a machine with "
                          f"network access and copy the files into {targets})")


class _ProgressWatcher(threading.Thread):
    """Reports the bytes on disk (finished files + *.incomplete partials) every `interval` seconds."""

    def __init__(self, spec: ModelSpec, store: ModelStore, emit: Emit, interval: float):
        super().__init__(daemon=True)
        self.spec, self.store, self.emit, self.interval = spec, store, emit, interval
        self.stopped = threading.Event()
        self.last = -1

    def files_done(self) -> int:
        target = self.store.target(self.spec)
        return sum(1 for rel in self.spec.files if (target / rel).is_file())

    def bytes_on_disk(self) -> int:
        target = self.store.target(self.spec)
        done = sum((target / rel).stat().st_size for rel in self.spec.files if (target / rel).is_file())
        return done + sum(p.stat().st_size for p in self.store.incomplete_files(self.spec) if p.exists())

    def report(self) -> None:
        try:
            current = self.bytes_on_disk()
            files = self.files_done()
        except OSError:  # a file renamed between listing and stat: the next tick sees it
            return
        if current != self.last:
            self.last = current
            self.emit(dict(event="progress", model=self.spec.name, bytes=current, total=self.spec.size_bytes,
                           files_done=files, files=len(self.spec.files)))

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.report()


def _failure(exc: BaseException, spec: ModelSpec, store: ModelStore, token: Optional[str]) -> BackendError:
    """A huggingface_hub / network exception -> one clear sentence naming the repository."""
    from huggingface_hub import errors as hf_errors

    where = f"{spec.repo_id} @ {spec.revision[:12]}"
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, token)
    if isinstance(exc, hf_errors.GatedRepoError):
        return DownloadFailed(f"{where} is gated: accept its conditions at {spec.licence.url} while logged in, "
                              "then pass a token (HF_TOKEN or --token)")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return DownloadFailed(f"{where}: the pinned revision is not in the repository (backend/hub/registry.py "
                              f"needs a correct commit): {detail}")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return DownloadFailed(f"{where}: repository not found or not accessible with this token: {detail}")
    if isinstance(exc, hf_errors.LocalEntryNotFoundError):
        return DownloadFailed(f"{where}: could not reach the Hugging Face hub and the files are not cached. Check "
                              f"the network connection (or HTTPS_PROXY / HF_ENDPOINT), or copy the files into "
                              f"{store.target(spec)}. Partial files are kept and resume next time")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        return DownloadFailed(f"{where}: the hub answered with an error: {detail}")
    return DownloadFailed(f"{where}: download failed ({type(exc).__name__}: {detail}). Partial files are kept "
                          "and resume next time")


def remove_corrupt(status: ModelStatus, store: ModelStore, emit: Emit) -> None:
    """Deletes files that are present but fail the integrity check, so the download fetches them
    again: huggingface_hub trusts a file that is in place (a cache snapshot entry of a pinned
    commit, or a local-dir file whose download metadata matches) and would never repair it."""
    for f in status.files:
        if f.state != "corrupt" or status.folder is None:
            continue
        path = status.folder / f.path
        emit(dict(event="remove_corrupt", model=status.spec.name, file=f.path, reason=f.detail))
        if path.is_symlink():  # hub cache: snapshots/<rev>/<file> -> blobs/<hash>
            path.resolve().unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        if isinstance(store, ModelsFolder):  # the local-dir metadata that marks it up to date
            meta = store.target(status.spec) / ".cache" / "huggingface" / "download" / (f.path + ".metadata")
            meta.unlink(missing_ok=True)


def download_model(spec: ModelSpec, store: ModelStore, emit: Emit, token: Optional[str] = None,
                   accept_licence: bool = False, progress_interval: float = 2.0) -> ModelStatus:
    """Fetches `spec`'s files into `store` and returns their status, which must be ready."""
    check_licences([spec], accept_licence)
    check_online(store, [spec])
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        raise Unsupported("huggingface_hub is not installed: pip install -r backend/requirements.txt") from None
    disable_progress_bars()  # our events report progress; its bars would break JSON-lines output

    remove_corrupt(store.status(spec), store, emit)
    target = store.target(spec)
    emit(dict(event="start", model=spec.name, repo_id=spec.repo_id, revision=spec.revision,
              licence=spec.licence.name, size_bytes=spec.size_bytes, files=list(spec.files), target=str(target)))
    kwargs = dict(repo_id=spec.repo_id, revision=spec.revision, allow_patterns=list(spec.files),
                  token=token or None)
    if isinstance(store, ModelsFolder):
        kwargs["local_dir"] = str(target)
    else:
        kwargs["cache_dir"] = str(store.root)
    watcher = _ProgressWatcher(spec, store, emit, progress_interval)
    watcher.start()
    try:
        snapshot_download(**kwargs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear, token-free message
        raise _failure(exc, spec, store, token) from None
    finally:
        watcher.stopped.set()
        watcher.join()
    watcher.report()
    status = store.status(spec)
    emit(dict(event="done", model=spec.name, state=status.state, folder=str(status.folder)))
    if status.state != READY:
        raise DownloadFailed(f"{spec.repo_id}: downloaded, but {status.state}: {status.problem()}")
    return status


def describe_event(event: dict) -> str:
    """A progress event as one plain line."""
    kind = event["event"]
    if kind == "start":
        return f"downloading {event['repo_id']} ({format_size(event['size_bytes'])}) into {event['target']}"
    if kind == "progress":
        total = max(event["total"], 1)
        files = f", {event['files_done']}/{event['files']} files" if "files" in event else ""
        return f"{event['model']}: {format_size(event['bytes'])} of about {format_size(total)}" \
               f" ({min(event['bytes'] / total, 1.0):.0%}{files})"
    if kind == "done":
        return f"{event['model']}: {event['state']} in {event['folder']}"
    if kind == "remove_corrupt":
        return f"{event['model']}: removing {event['file']} to fetch it again ({event['reason']})"
    if kind == "already_ready":
        return f"{event['model']}: already ready in {event['folder']}, nothing to download"
    return str(event)


def token_from(arg: Optional[str], environ) -> Optional[str]:
    """--token, else HF_TOKEN; None lets huggingface_hub use a token stored by `hf auth login`."""
    return arg or environ.get("HF_TOKEN") or None


__all__ = ["DownloadFailed", "announce", "check_licences", "check_online", "describe_event", "download_model",
           "redact", "token_from"]
