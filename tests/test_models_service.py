"""The model manager's and the setup check's service commands (models_status, models_verify,
models_download, models_remove, check) over the real stdio protocol, in a real `backend serve`.

Downloads go to the local HTTP server of test_model_store.py that imitates the hub; every run
points HF_HUB_CACHE into the test's folders, so nothing outside them is read or written. The
backend's stderr is kept in a file, to check that the token reaches no log.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from blender_harness import REPO

pytest.importorskip("torch")
pytest.importorskip("huggingface_hub")

from test_model_store import SECRET, LocalHub  # noqa: E402

from backend.hub.registry import ACTIONMESH, DINOV2, MODELS, RMBG, TRIPOSG  # noqa: E402
from backend.pipelines.check import fitting_modes  # noqa: E402

GiB = 1 << 30


class Peer:
    """A bare protocol peer on `python -m backend serve` with its own environment; its stderr goes to a file."""

    def __init__(self, tmp_path, **env):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        base.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", HF_HUB_CACHE=str(tmp_path / "empty_cache"))
        base.update({k: str(v) for k, v in env.items()})
        self.stderr_path = tmp_path / f"backend-stderr-{time.monotonic_ns()}.log"
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=base, cwd=str(REPO),
                                     bufsize=1)
        self.lines = []
        self.ids = 0
        assert self.recv()["type"] == "hello"

    def recv(self):
        line = self.proc.stdout.readline()
        assert line, "backend closed its stdout"
        self.lines.append(line)
        return json.loads(line)

    def send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def submit(self, command, **args):
        self.ids += 1
        job = f"j{self.ids}"
        self.send({"type": "submit", "job": job, "command": command, "args": args})
        return job

    def run(self, command, on_progress=None, **args):
        """Submits and waits; returns (final message, progress messages)."""
        job = self.submit(command, **args)
        progress = []
        while True:
            message = self.recv()
            if message.get("job") != job:
                continue
            if message["type"] == "progress":
                progress.append(message)
                if on_progress is not None:
                    on_progress(job, message)
            elif message["type"] != "accepted":
                return message, progress

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.stderr.close()
        return self.stderr_path.read_text()


@pytest.fixture
def peer_factory(tmp_path):
    peers = []

    def make(**env):
        peers.append(Peer(tmp_path, **env))
        return peers[-1]

    yield make
    for p in peers:
        p.close()


def states(outputs):
    return {m["name"]: m["state"] for m in outputs["models"]}


# ---------------------------------------------------------------- status, verify, remove


def test_status_verify_and_remove_in_a_models_folder(tiny_models, tmp_path, peer_factory):
    models = tmp_path / "models"
    shutil.copytree(tiny_models[0], models)
    peer = peer_factory()
    reply, progress = peer.run("models_status", models_dir=str(models))
    assert reply["type"] == "result", reply
    out = reply["outputs"]
    assert out["kind"] == "models folder" and out["root"] == str(models)
    assert states(out) == {"actionmesh": "ready", "triposg": "ready", "dinov2": "ready", "rmbg": "missing",
                           "wan2.1-t2v-1.3b": "missing", "wan2.2-ti2v-5b": "missing"}
    by_name = {m["name"]: m for m in out["models"]}
    for name, spec in MODELS.items():
        entry = by_name[name]
        assert entry["repo_id"] == spec.repo_id and entry["licence"] == spec.licence.name
        assert entry["size_bytes"] == spec.size_bytes and entry["size_text"] == spec.size_text()
        assert entry["commercial_use"] == spec.licence.commercial_use and entry["licence_url"] == spec.licence.url
    assert by_name["actionmesh"]["folder"] == str(models / "facebook" / "ActionMesh")
    assert progress and all(p["stage"] == "status" for p in progress)

    # An empty folder: everything missing. A truncated weights file: partial, and verify says why.
    empty = tmp_path / "empty"
    empty.mkdir()
    reply, _ = peer.run("models_status", models_dir=str(empty))
    assert set(states(reply["outputs"]).values()) == {"missing"}
    weights = models / "VAST-AI" / "TripoSG" / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    reply, _ = peer.run("models_verify", names=["triposg"], models_dir=str(models))
    out = reply["outputs"]
    assert not out["ok"] and states(out) == {"triposg": "partial"}
    assert "truncated" in out["problems"]["triposg"]
    assert f"python -m backend models download triposg --models-dir {models}" in out["problems"]["triposg"]
    reply, _ = peer.run("models_verify", models_dir=str(models))  # all: optional rmbg missing does not fail
    assert set(states(reply["outputs"])) == set(MODELS) and not reply["outputs"]["ok"]

    # Remove: only our files; a file of the user's in the same folder stays (with its folder).
    keep = models / "facebook" / "ActionMesh" / "notes.txt"
    keep.write_text("mine")
    reply, progress = peer.run("models_remove", name="actionmesh", models_dir=str(models))
    assert reply["type"] == "result", reply
    assert reply["outputs"]["state"] == "missing"
    assert sorted(reply["outputs"]["removed"]) == sorted(ACTIONMESH.files)
    assert keep.read_text() == "mine" and not (models / "facebook" / "ActionMesh" / "denoiser").exists()
    reply, _ = peer.run("models_status", models_dir=str(models))
    assert states(reply["outputs"]) == {"actionmesh": "missing", "triposg": "partial", "dinov2": "ready",
                                        "rmbg": "missing",
                                        "wan2.1-t2v-1.3b": "missing", "wan2.2-ti2v-5b": "missing"}
    reply, _ = peer.run("models_remove", name="dinov2", models_dir=str(models))
    assert not (models / "facebook" / "dinov2-large").exists()  # emptied folders go
    keep.unlink()
    reply, _ = peer.run("models_remove", name="actionmesh", models_dir=str(models))
    assert reply["outputs"]["removed"] == [] and not (models / "facebook").exists()  # its folder, now empty
    reply, _ = peer.run("models_remove", name="triposg", models_dir=str(models))
    assert not (models / "VAST-AI").exists() and models.is_dir()  # up to, never including, the models folder

    # Bad names and a folder that is a link to somewhere else are refused, and nothing is touched there.
    reply, _ = peer.run("models_remove", name="nope", models_dir=str(models))
    assert reply["type"] == "error" and reply["code"] == "bad_input" and "actionmesh" in reply["message"]
    outside = tmp_path / "outside"
    shutil.copytree(tiny_models[0] / "facebook", outside)
    linked = tmp_path / "linked"
    (linked / "facebook").mkdir(parents=True)
    (linked / "facebook" / "dinov2-large").symlink_to(outside / "dinov2-large", target_is_directory=True)
    reply, _ = peer.run("models_remove", name="dinov2", models_dir=str(linked))
    assert reply["type"] == "error" and reply["code"] == "bad_input" and "refusing" in reply["message"]
    assert (outside / "dinov2-large" / "model.safetensors").is_file()
    peer.close()


def test_status_and_remove_in_the_hub_cache(tiny_models, tmp_path, peer_factory):
    cache = tmp_path / "hub"
    shutil.copytree(tiny_models[1], cache, symlinks=True)
    peer = peer_factory(HF_HUB_CACHE=cache, HF_HUB_OFFLINE="1")
    reply, _ = peer.run("models_status")
    out = reply["outputs"]
    assert out["kind"] == "hub cache" and out["root"] == str(cache)
    assert states(out) == {"actionmesh": "ready", "triposg": "ready", "dinov2": "ready", "rmbg": "missing",
                           "wan2.1-t2v-1.3b": "missing", "wan2.2-ti2v-5b": "missing"}
    reply, _ = peer.run("models_remove", name="triposg")
    assert reply["type"] == "result" and reply["outputs"]["state"] == "missing"
    assert not (cache / "models--VAST-AI--TripoSG").exists()
    assert (cache / "models--facebook--ActionMesh").is_dir()
    reply, _ = peer.run("models_status")
    assert states(reply["outputs"])["triposg"] == "missing" and states(reply["outputs"])["dinov2"] == "ready"
    peer.close()


# ---------------------------------------------------------------- download


def test_download_through_the_service_never_shows_the_token(tiny_models, tmp_path, peer_factory):
    source = tiny_models[0]
    repos = {s.repo_id: (s.revision, source / s.org / s.repo_name) for s in (DINOV2, TRIPOSG, ACTIONMESH)}
    target = tmp_path / "models"
    with LocalHub(repos) as hub:
        peer = peer_factory(HF_ENDPOINT=hub.url)
        # A non-commercial licence not accepted: refused before anything is fetched or created.
        reply, _ = peer.run("models_download", names=["actionmesh"], models_dir=str(target), token=SECRET)
        assert reply["type"] == "error" and reply["code"] == "bad_input"
        assert ACTIONMESH.licence.name in reply["message"] and not target.exists() and not hub.requested

        reply, progress = peer.run("models_download", names=["dinov2", "triposg", "actionmesh"],
                                   models_dir=str(target), accept_licence=True, token=SECRET)
        assert reply["type"] == "result", reply
        out = reply["outputs"]
        assert set(states(out).values()) == {"ready"} and out["downloaded"] == ["dinov2", "triposg", "actionmesh"]
        assert set(hub.authorization) == {f"Bearer {SECRET}"}  # the token did reach the hub
        assert {p["stage"] for p in progress} == {"download"}
        assert any("files" in p["message"] for p in progress)
        total = progress[-1]["total"]
        assert total == DINOV2.size_bytes + TRIPOSG.size_bytes + ACTIONMESH.size_bytes
        steps = [p["step"] for p in progress]
        assert steps == sorted(steps) and steps[-1] == total
        reply, _ = peer.run("models_status", models_dir=str(target))
        assert states(reply["outputs"]) == {"actionmesh": "ready", "triposg": "ready", "dinov2": "ready",
                                            "rmbg": "missing",
                                            "wan2.1-t2v-1.3b": "missing", "wan2.2-ti2v-5b": "missing"}
        # Ready models need no network: nothing is requested again.
        hub.requested.clear()
        reply, _ = peer.run("models_download", names=["dinov2"], models_dir=str(target), token=SECRET)
        assert reply["outputs"]["already_ready"] == ["dinov2"] and not hub.requested
        # A failing download: its message is scrubbed of the token even where the hub echoes it.
        reply, _ = peer.run("models_download", names=["rmbg"], models_dir=str(target), accept_licence=True,
                            token=SECRET)
        assert reply["type"] == "error" and reply["code"] == "download_failed", reply
        assert RMBG.repo_id in reply["message"]
        log = peer.close()
    everything = "".join(peer.lines) + log
    assert SECRET not in everything
    assert not list(tmp_path.rglob("*.incomplete"))


def test_download_offline_and_unreachable_are_clear_errors(tmp_path, peer_factory):
    peer = peer_factory(HF_HUB_OFFLINE="1")
    reply, _ = peer.run("models_download", names=["dinov2"], models_dir=str(tmp_path / "m"))
    assert reply["type"] == "error" and reply["code"] == "unsupported" and "HF_HUB_OFFLINE" in reply["message"]
    peer.close()
    peer = peer_factory(HF_ENDPOINT="http://127.0.0.1:9")
    reply, _ = peer.run("models_download", names=["dinov2"], models_dir=str(tmp_path / "m"), token=SECRET)
    assert reply["type"] == "error" and reply["code"] == "download_failed"
    assert "could not reach the Hugging Face hub" in reply["message"]
    assert SECRET not in "".join(peer.lines) + peer.close()


def slow(hub, chunk=64 * 1024, pause=0.05):
    """Makes the local hub send bodies in small, slow chunks (a download that takes seconds)."""
    base = hub.server.RequestHandlerClass

    class Slow(base):
        def _respond(self, status, headers, body=b"", send_body=True):
            if not send_body or len(body) <= chunk:
                return super()._respond(status, headers, body, send_body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                for i in range(0, len(body), chunk):
                    self.wfile.write(body[i:i + chunk])
                    self.wfile.flush()
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass

    hub.server.RequestHandlerClass = Slow


def test_cancel_stops_a_download_and_publishes_nothing_half_written(tiny_models, tmp_path, peer_factory):
    source = tiny_models[0]
    repos = {TRIPOSG.repo_id: (TRIPOSG.revision, source / TRIPOSG.org / TRIPOSG.repo_name)}
    target = tmp_path / "models"
    with LocalHub(repos) as hub:
        slow(hub)
        peer = peer_factory(HF_ENDPOINT=hub.url)
        cancelled = []

        def cancel_once(job, message):
            if message["step"] > 0 and not cancelled:
                peer.send({"type": "cancel", "job": job})
                cancelled.append(time.monotonic())

        reply, _ = peer.run("models_download", names=["triposg"], models_dir=str(target), on_progress=cancel_once)
        assert cancelled and reply["type"] == "cancelled", reply
        assert time.monotonic() - cancelled[0] < 3.0
        reply, _ = peer.run("models_status", models_dir=str(target))
        entry = {m["name"]: m for m in reply["outputs"]["models"]}["triposg"]
        assert entry["state"] == "partial"
        assert not [f for f in entry["files"] if f["state"] == "corrupt"]  # only whole files are in place
        # The next download finishes the job (resuming what was kept).
        reply, _ = peer.run("models_download", names=["triposg"], models_dir=str(target))
        assert reply["type"] == "result", reply
        assert states(reply["outputs"]) == {"triposg": "ready"}
        peer.close()


# ---------------------------------------------------------------- check


def test_check_reports_torch_the_device_and_the_modes_that_fit(peer_factory, tmp_path):
    import torch

    peer = peer_factory(CUDA_VISIBLE_DEVICES="")
    reply, progress = peer.run("check")
    assert reply["type"] == "result", reply
    out = reply["outputs"]
    assert out["torch"] == torch.__version__ and out["device"] == "cpu" and not out["cuda_available"]
    assert out["cpu_count"] >= 1 and out["ram_total_bytes"] > 0
    modes = {m["mode"]: m for m in out["modes"]}
    assert out["fitting"] == ["fit_only"] and out["recommended"] == "fit_only"
    assert not modes["default"]["fits"] and not modes["low_vram"]["fits"] and modes["fit_only"]["fits"]
    # The plan's figures for generate: about 13.5 GiB default and 7.2 GiB --low-vram for 16 frames.
    assert 10 * GiB < modes["default"]["needs_bytes"] < 20 * GiB
    assert 5 * GiB < modes["low_vram"]["needs_bytes"] <= 8 * GiB
    assert "GPU" in modes["default"]["reason"]
    assert [p["step"] for p in progress] == [0, 1, 2]
    peer.close()


def test_modes_against_gpu_memory():
    needs = {"default": (int(25.6 * GiB), "a"), "low_vram": (int(12.6 * GiB), "b"), "cpu": (26 * GiB, "c")}

    def fits(free, total=80 * GiB, device="cuda"):
        info = dict(device=device, device_name="GPU", gpu_free_bytes=free, gpu_total_bytes=total)
        return [m["mode"] for m in fitting_modes(info, needs) if m["fits"]]

    assert fits(70 * GiB) == ["default", "low_vram", "fit_only"]
    assert fits(16 * GiB) == ["low_vram", "fit_only"]
    assert fits(8 * GiB) == ["fit_only"]
    assert fits(None, total=24 * GiB) == ["low_vram", "fit_only"]  # free unknown: the total counts
    assert fits(None, total=None, device="mps") == ["default", "low_vram", "fit_only"]


def test_cli_remove_is_the_same_function(tiny_models, tmp_path):
    from backend_cli import run_backend

    models = tmp_path / "models"
    shutil.copytree(tiny_models[0], models)
    proc = run_backend("models", "remove", "dinov2", "--models-dir", models, "--json",
                       env={"HF_HUB_CACHE": str(tmp_path / "empty_cache")})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "missing" and sorted(result["removed"]) == sorted(DINOV2.files)
    assert (models / "facebook" / "ActionMesh").is_dir()
    proc = run_backend("models", "remove", "nope", "--models-dir", models)
    assert proc.returncode == 2 and "unknown model" in proc.stderr
