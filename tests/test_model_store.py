"""`python -m backend models ...`: the model registry, both storage layouts, integrity checks, and
downloading, all without a network.

A set of small random models in the released layouts (`models tiny-random`) stands in for the real
downloads; a copy of it in huggingface_hub's cache layout covers HF_HUB_CACHE / HF_HUB_OFFLINE; and
a local HTTP server answering the few hub requests huggingface_hub makes (repository info at a
revision, HEAD/GET of `<repo>/resolve/<revision>/<file>`) serves that set to real downloads.
Every command runs in a subprocess with HF_HUB_CACHE pointing into the test's folders, so nothing
outside them is read or written.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from backend_cli import run_backend

pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

from backend.hub.download import redact  # noqa: E402
from backend.hub.integrity import IntegrityError, check_file, safetensors_header  # noqa: E402
from backend.hub.registry import ACTIONMESH, DINOV2, MODELS, RMBG, TRIPOSG  # noqa: E402

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused at once, no network used
SECRET = "hf_TESTSECRETtoken0123456789"


run = run_backend


@pytest.fixture(scope="module")
def tiny_set(tiny_models):
    """(models folder, hub cache) holding the tiny random set; read-only for the tests."""
    models, cache, summary = tiny_models
    assert summary["models"] == [ACTIONMESH.repo_id, TRIPOSG.repo_id, DINOV2.repo_id]
    return models, cache


@pytest.fixture
def models_copy(tiny_set, tmp_path):
    dest = tmp_path / "models"
    shutil.copytree(tiny_set[0], dest)
    return dest


def listing(*where, env=None):
    """`models list --json` -> {name: model}; `where` is ("--models-dir", DIR) or nothing (the hub cache)."""
    if len(where) == 1:
        where = ("--models-dir", where[0])
    proc = run("models", "list", "--json", *where, env=env)
    assert proc.returncode == 0, proc.stderr
    return {m["name"]: m for m in json.loads(proc.stdout)["models"]}


def isolated(tmp_path, **extra):
    return {"HF_HUB_CACHE": str(tmp_path / "empty_cache"), **extra}


# ---------------------------------------------------------------- registry


def test_registry_pins_full_commits_and_only_safe_files():
    for spec in MODELS.values():
        assert len(spec.revision) == 40 and all(c in "0123456789abcdef" for c in spec.revision), spec.name
        assert spec.files and all(f.endswith((".json", ".safetensors")) for f in spec.files), spec.name
        assert spec.size_bytes > 0 and spec.licence.name and spec.licence.url.startswith("https://")
    assert not ACTIONMESH.licence.commercial_use and not RMBG.licence.commercial_use
    assert TRIPOSG.licence.commercial_use and DINOV2.licence.commercial_use
    assert [m.name for m in MODELS.values() if not m.required] == ["rmbg", "wan2.1-t2v-1.3b", "wan2.2-ti2v-5b"]


# ---------------------------------------------------------------- the tiny set in both layouts


def test_tiny_random_set_is_ready_in_a_models_folder(tiny_set, tmp_path):
    models, _ = tiny_set
    state = listing(models, env=isolated(tmp_path))
    assert {n: m["state"] for n, m in state.items()} == {
        "actionmesh": "ready", "triposg": "ready", "dinov2": "ready", "rmbg": "missing",
        "wan2.1-t2v-1.3b": "missing", "wan2.2-ti2v-5b": "missing"}
    assert Path(state["actionmesh"]["folder"]) == models / "facebook" / "ActionMesh"
    proc = run("models", "verify", "--models-dir", models, env=isolated(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "optional briaai/RMBG-1.4" in proc.stderr  # reported, not failing
    plain = run("models", "list", "--models-dir", models, env=isolated(tmp_path))
    assert plain.returncode == 0
    for spec in MODELS.values():
        assert spec.name in plain.stdout and spec.licence.name in plain.stdout and spec.size_text() in plain.stdout


def test_hub_cache_copy_is_ready_offline(tiny_set):
    _, cache = tiny_set
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    state = listing(env=env)
    for name in ("actionmesh", "triposg", "dinov2"):
        assert state[name]["state"] == "ready"
        assert state[name]["found_revision"] == MODELS[name].revision
    proc = run("models", "verify", env=env)
    assert proc.returncode == 0, proc.stderr
    path = run("models", "path", "triposg", env=env)
    assert path.returncode == 0, path.stderr
    expected = cache / "models--VAST-AI--TripoSG" / "snapshots" / TRIPOSG.revision
    assert Path(path.stdout.strip()) == expected
    # huggingface_hub itself resolves the copy offline: it is its real cache layout.
    probe = subprocess.run(
        [sys.executable, "-c", "from huggingface_hub import snapshot_download as s; "
                               f"print(s('{TRIPOSG.repo_id}', revision='{TRIPOSG.revision}'))"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == expected


def test_hf_home_locates_the_cache(tiny_set, tmp_path):
    _, cache = tiny_set
    home = tmp_path / "hf_home"
    home.mkdir()
    (home / "hub").symlink_to(cache, target_is_directory=True)
    state = listing(env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert state["dinov2"]["state"] == "ready"
    assert state["dinov2"]["folder"].startswith(str(home / "hub"))


def test_tiny_set_loads_and_agrees(tiny_set):
    """Our loaders and transformers read every folder strictly, and the sizes fit together: DINOv2
    tokens feed both transformers, their latents decode through the VAE and drive Stage II."""
    import torch
    from transformers import BitImageProcessor, Dinov2Model

    from backend.models.dit import ShapeDiT, TemporalDenoiser
    from backend.models.temporal_autoencoder import TemporalAutoencoder
    from backend.models.vae import ShapeVAE

    models, _ = tiny_set
    triposg, actionmesh = models / "VAST-AI" / "TripoSG", models / "facebook" / "ActionMesh"
    vae = ShapeVAE.from_pretrained(triposg, subfolder="vae")
    dit = ShapeDiT.from_pretrained(triposg, subfolder="transformer")
    denoiser = TemporalDenoiser.from_pretrained(actionmesh, subfolder="denoiser")
    autoencoder = TemporalAutoencoder.from_pretrained(actionmesh, subfolder="autoencoder")
    dinov2 = Dinov2Model.from_pretrained(models / "facebook" / "dinov2-large").eval()
    encoder = Dinov2Model.from_pretrained(triposg / "image_encoder_dinov2").eval()
    processor = BitImageProcessor.from_pretrained(triposg / "feature_extractor_dinov2")
    assert json.loads((triposg / "model_index.json").read_text())["_class_name"] == "TripoSGPipeline"

    torch.manual_seed(0)
    frames = (torch.rand(2, 300, 400, 3) * 255).to(torch.uint8).numpy()
    with torch.no_grad():
        pixels = processor(images=list(frames), return_tensors="pt").pixel_values
        assert pixels.shape == (2, 3, 224, 224)
        context = dinov2(pixel_values=pixels).last_hidden_state  # [2, 257, hidden]
        anchor = encoder(pixel_values=pixels[:1]).last_hidden_state
        tokens = denoiser.num_tokens_nominal
        latents = torch.randn(1, 2, tokens, vae.config["latent_channels"])
        assert dit(latents[:, 0], torch.tensor([500.0]), anchor).shape == latents[:, 0].shape
        velocity = denoiser(latents, context[None], torch.arange(2)[None], 500.0, mask=torch.tensor([[1.0, 0.0]]))
        assert velocity.shape == latents.shape
        grid = torch.linspace(-1, 1, 25)
        xyz = torch.stack(torch.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(1, -1, 3)
        sdf = vae.decode(latents[:, 0], xyz)
        assert (sdf > 0).any() and (sdf < 0).any()  # the shipped VAE's field has a surface: meshes come out
        queries = torch.cat([xyz[:, :50], torch.nn.functional.normalize(torch.randn(1, 50, 3), dim=-1)], -1)
        moved = autoencoder(latents, queries, 0.0, torch.tensor([[1.0]]), frame_index=torch.arange(2)[None])
        assert moved.shape == (1, 1, 50, 3) and torch.isfinite(moved).all()


def test_tiny_set_carries_its_own_generation_defaults(tiny_set):
    """64 latent tokens per frame (the denoiser's num_tokens_nominal) and a 64^3 grid (our private
    key of model_index.json); the release's configs, which the tiny set mirrors, carry neither."""
    from backend.hub.tiny import MODEL_INDEX
    from backend.models.configs import ACTIONMESH_DENOISER_CONFIG
    from backend.hub.registry import MODEL_SET_DEFAULTS_KEY

    models, _ = tiny_set
    denoiser = json.loads((models / "facebook" / "ActionMesh" / "denoiser" / "config.json").read_text())
    assert denoiser["num_tokens_nominal"] == 64 and ACTIONMESH_DENOISER_CONFIG["num_tokens_nominal"] == 2048
    index = json.loads((models / "VAST-AI" / "TripoSG" / "model_index.json").read_text())
    assert index[MODEL_SET_DEFAULTS_KEY] == {"resolution": 64} and MODEL_SET_DEFAULTS_KEY not in MODEL_INDEX
    assert {k: v for k, v in index.items() if k != MODEL_SET_DEFAULTS_KEY} == MODEL_INDEX


def test_tiny_rmbg_is_found_in_a_models_folder_and_a_hub_cache(tmp_path):
    from backend.hub.tiny import copy_to_hub_cache, write_tiny_rmbg

    folder = write_tiny_rmbg(tmp_path / "models")
    assert folder == tmp_path / "models" / "briaai" / "RMBG-1.4"
    assert listing(tmp_path / "models", env=isolated(tmp_path))["rmbg"]["state"] == "ready"
    copy_to_hub_cache(tmp_path / "models", tmp_path / "hub")
    state = listing(env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"})["rmbg"]
    assert state["state"] == "ready" and state["folder"].endswith(RMBG.revision)


def test_tiny_random_writes_rmbg_only_when_asked(tmp_path):
    proc = run("models", "tiny-random", tmp_path / "with", "--with-rmbg")
    assert proc.returncode == 0, proc.stderr
    states = {name: m["state"] for name, m in listing(tmp_path / "with", env=isolated(tmp_path)).items()}
    # rmbg besides the three (without: missing, as test_tiny_random_set_is_ready_in_a_models_folder
    # checks); the video models only with --with-video (tests/test_prompt.py)
    assert states == {**{name: "ready" for name in ("actionmesh", "triposg", "dinov2", "rmbg")},
                      "wan2.1-t2v-1.3b": "missing", "wan2.2-ti2v-5b": "missing"}, states


# ---------------------------------------------------------------- missing and partial


def test_deleted_file_fails_verify_with_the_fetch_command(models_copy, tmp_path):
    (models_copy / "facebook" / "ActionMesh" / "denoiser" / "model.safetensors").unlink()
    state = listing(models_copy, env=isolated(tmp_path))["actionmesh"]
    assert state["state"] == "partial"
    assert {f["path"]: f["state"] for f in state["files"]}["denoiser/model.safetensors"] == "missing"
    proc = run("models", "verify", "--models-dir", models_copy, env=isolated(tmp_path))
    assert proc.returncode == 2
    for needle in ("facebook/ActionMesh", "FAIR Noncommercial Research License", ACTIONMESH.size_text(),
                   "denoiser/model.safetensors missing",
                   f"python -m backend models download actionmesh --accept-licence --models-dir {models_copy}"):
        assert needle in proc.stderr, (needle, proc.stderr)
    assert run("models", "path", "actionmesh", "--models-dir", models_copy, env=isolated(tmp_path)).returncode == 2

    shutil.rmtree(models_copy / "facebook" / "dinov2-large")
    assert listing(models_copy, env=isolated(tmp_path))["dinov2"]["state"] == "missing"
    proc = run("models", "verify", "dinov2", "--models-dir", models_copy, env=isolated(tmp_path))
    assert proc.returncode == 2
    assert "facebook/dinov2-large is missing" in proc.stderr and "Apache-2.0" in proc.stderr
    assert f"python -m backend models download dinov2 --models-dir {models_copy}" in proc.stderr


def test_truncated_safetensors_is_partial(models_copy, tmp_path):
    weights = models_copy / "VAST-AI" / "TripoSG" / "transformer" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    state = listing(models_copy, env=isolated(tmp_path))["triposg"]
    assert state["state"] == "partial"
    bad = {f["path"]: f for f in state["files"]}["transformer/diffusion_pytorch_model.safetensors"]
    assert bad["state"] == "corrupt" and "truncated" in bad["detail"]
    proc = run("models", "verify", "--models-dir", models_copy, env=isolated(tmp_path))
    assert proc.returncode == 2
    assert "VAST-AI/TripoSG is partial" in proc.stderr and "truncated" in proc.stderr
    assert "python -m backend models download triposg" in proc.stderr

    # A download (here: no network) first removes the corrupt file so that it is fetched again:
    # huggingface_hub would otherwise trust the file in place.
    proc = run("models", "download", "triposg", "--models-dir", models_copy,
               env=isolated(tmp_path, HF_ENDPOINT=UNREACHABLE))
    assert proc.returncode == 2
    assert not weights.exists()


def test_interrupted_hub_download_is_partial(tiny_set, tmp_path):
    """huggingface_hub downloads into blobs/<etag>.incomplete and links the snapshot entry when done."""
    cache = tmp_path / "hub"
    shutil.copytree(tiny_set[1], cache, symlinks=True)
    repo = cache / "models--facebook--dinov2-large"
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    (repo / "blobs" / ("0" * 64 + ".incomplete")).write_bytes(b"\0" * 100)
    state = listing(env=env)["dinov2"]  # every file whole: a stale leftover is only noted
    assert state["state"] == "ready" and "interrupted download" in " ".join(state["notes"])
    (repo / "snapshots" / DINOV2.revision / "model.safetensors").unlink()
    state = listing(env=env)["dinov2"]
    assert state["state"] == "partial" and "interrupted download" in " ".join(state["notes"])
    for link in (repo / "snapshots" / DINOV2.revision).iterdir():
        link.unlink()
    assert listing(env=env)["dinov2"]["state"] == "partial"  # started: nothing whole yet, but not "missing"
    (repo / "blobs" / ("0" * 64 + ".incomplete")).unlink()
    assert listing(env=env)["dinov2"]["state"] == "missing"


def test_integrity_checks(tiny_set, tmp_path):
    good = tiny_set[0] / "facebook" / "dinov2-large" / "model.safetensors"
    header = safetensors_header(good)
    assert "embeddings.cls_token" in header
    data = good.read_bytes()
    cases = {"cut.safetensors": data[:-10], "long.safetensors": data + b"\0" * 16,
             "tiny.safetensors": data[:5], "garbage.safetensors": b"\xff" * 64}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(IntegrityError):
            safetensors_header(tmp_path / name)
        assert check_file(tmp_path / name)
    (tmp_path / "config.json").write_text("{not json")
    assert "JSON" in check_file(tmp_path / "config.json")


# ---------------------------------------------------------------- downloading (no network here)


class LocalHub:
    """Serves folders as hub repositories at one revision each, as huggingface_hub asks for them:
    GET /api/models/<repo>/revision/<rev> (file list), HEAD and GET /<repo>/resolve/<rev>/<path>
    (X-Repo-Commit, ETag, Content-Length; then the bytes). Records the Authorization headers."""

    def __init__(self, repos):
        self.repos = repos  # repo_id -> (revision, folder)
        self.authorization = []
        self.requested = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _respond(self, status, headers, body=b"", send_body=True):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _serve(self, send_body):
                path = unquote(urlparse(self.path).path)
                hub.authorization.append(self.headers.get("Authorization"))
                for repo, (revision, folder) in hub.repos.items():
                    if path == f"/api/models/{repo}/revision/{revision}":
                        files = sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file())
                        body = json.dumps({"id": repo, "sha": revision,
                                           "siblings": [{"rfilename": f} for f in files]}).encode()
                        return self._respond(200, {"Content-Type": "application/json",
                                                   "Content-Length": str(len(body))}, body, send_body)
                    prefix = f"/{repo}/resolve/{revision}/"
                    if path.startswith(prefix) and (folder / path[len(prefix):]).is_file():
                        hub.requested.append(f"{repo}/{path[len(prefix):]}")  # HEAD and GET alike
                        data = (folder / path[len(prefix):]).read_bytes()
                        return self._respond(200, {"X-Repo-Commit": revision,
                                                   "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                                   "Content-Length": str(len(data))}, data, send_body)
                self._respond(404, {"X-Error-Code": "EntryNotFound", "Content-Length": "0"})

            def do_HEAD(self):
                self._serve(send_body=False)

            def do_GET(self):
                self._serve(send_body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("layout", ["models-folder", "hub-cache"])
def test_download_from_a_local_hub(tiny_set, tmp_path, layout):
    """The real download path (huggingface_hub against a local server): only the registry's files,
    at the pinned revision, progress as JSON lines, the token sent to the hub and printed nowhere;
    a truncated file is noticed and fetched again."""
    source = tiny_set[0]
    repos = {spec.repo_id: (spec.revision, source / spec.org / spec.repo_name) for spec in (DINOV2, TRIPOSG)}
    target = tmp_path / "models"
    where = ["--models-dir", target] if layout == "models-folder" else []
    with LocalHub(repos) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": SECRET, "HF_HUB_CACHE": str(tmp_path / "cache")}
        proc = run("models", "download", "dinov2", "triposg", "--json", *where, env=env)
        assert proc.returncode == 0, proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
        assert set(hub.authorization) == {f"Bearer {SECRET}"}
        assert set(hub.requested) == {f"{s.repo_id}/{f}" for s in (DINOV2, TRIPOSG) for f in s.files}
        events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
        assert [e["event"] for e in events if e["model"] == "dinov2"][0] == "start"
        assert any(e["event"] == "progress" and e["bytes"] > 0 for e in events)
        assert [e["state"] for e in events if e["event"] == "done"] == ["ready", "ready"]
        folders = [Path(line) for line in proc.stdout.split()]
        state = listing(*where, env=env)
        assert state["dinov2"]["state"] == state["triposg"]["state"] == "ready"
        assert folders == [Path(state["dinov2"]["folder"]), Path(state["triposg"]["folder"])]

        weights = folders[1] / "vae" / "diffusion_pytorch_model.safetensors"
        broken = weights.resolve()  # the blob, in the hub cache
        broken.write_bytes(broken.read_bytes()[:1000])
        assert listing(*where, env=env)["triposg"]["state"] == "partial"
        hub.requested.clear()
        proc = run("models", "download", "triposg", *where, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "removing vae/diffusion_pytorch_model.safetensors" in proc.stderr
        assert set(hub.requested) == {"VAST-AI/TripoSG/vae/diffusion_pytorch_model.safetensors"}
        assert listing(*where, env=env)["triposg"]["state"] == "ready"


def test_download_refused_without_accepting_a_non_commercial_licence(tmp_path):
    target = tmp_path / "models"
    for name, spec in (("actionmesh", ACTIONMESH), ("rmbg", RMBG), ("all", ACTIONMESH)):
        proc = run("models", "download", name, "--models-dir", target, env=isolated(tmp_path))
        assert proc.returncode == 2, name
        assert "--accept-licence" in proc.stderr and spec.licence.name in proc.stderr
        assert spec.size_text() in proc.stderr and spec.repo_id in proc.stderr
        assert not target.exists()  # refused before anything was fetched or created


def test_offline_download_is_a_clear_error(tmp_path):
    target = tmp_path / "models"
    proc = run("models", "download", "triposg", "--models-dir", target, env=isolated(tmp_path, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2
    assert "HF_HUB_OFFLINE" in proc.stderr and "MIT" in proc.stderr  # the licence was named before failing
    proc = run("models", "download", "actionmesh", "--accept-licence", "--models-dir", target,
               env=isolated(tmp_path, HF_ENDPOINT=UNREACHABLE))
    assert proc.returncode == 2
    assert "could not reach the Hugging Face hub" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_download_of_a_ready_model_needs_no_network(tiny_set, tmp_path):
    proc = run("models", "download", "dinov2", "--models-dir", tiny_set[0], env=isolated(tmp_path, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == tiny_set[0] / "facebook" / "dinov2-large"
    assert "already ready" in proc.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_token_never_printed(tmp_path, how):
    target = tmp_path / "models"
    args = ["models", "download", "dinov2", "actionmesh", "--accept-licence", "--models-dir", target, "--json"]
    env = isolated(tmp_path, HF_ENDPOINT=UNREACHABLE)
    if how == "flag":
        args += ["--token", SECRET]
    else:
        env["HF_TOKEN"] = SECRET
    proc = run(*args, env=env)
    assert proc.returncode == 2
    assert SECRET not in proc.stdout + proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert events and events[0]["event"] == "start" and events[0]["licence"] == DINOV2.licence.name
    assert redact(f"failed with {SECRET} in it", SECRET) == "failed with *** in it"
