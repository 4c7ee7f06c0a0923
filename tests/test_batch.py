"""`python -m backend batch` (issue 24): a manifest of clips run through the same functions as
`generate`, `register` and `rig`, on a local Ray cluster; rows published atomically and readable by
the other users of a shared folder; resumable; progress for the terminal and the service."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend_cli import REPO, run_backend


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_published_result_has_the_permissions_mkdir_and_open_give(tmp_path, umask):
    """generate's staged folder (mkdtemp: 0700) and atomically written files (mkstemp: 0600) are
    published as a plain mkdir and open would leave them: readable by others under umask 022."""
    from backend.io.mesh import write_mesh
    from backend.jobs import JobContext
    from backend.pipelines.generate.outputs import staged_output

    old = os.umask(umask)
    try:
        out = tmp_path / "result"
        with staged_output(JobContext(), out) as staged:
            write_mesh(staged.tmp / "anchor.glb", np.eye(3), np.array([[0, 1, 2]]))
            (staged.tmp / "sub").mkdir()
            staged.publish({"input": {}, "kind": "test"})
    finally:
        os.umask(old)
    assert _mode(out) == 0o777 & ~umask and _mode(out / "sub") == 0o777 & ~umask
    assert _mode(out / "anchor.glb") == _mode(out / "report.json") == 0o666 & ~umask
    if umask == 0o022:
        assert all(_mode(p) & stat.S_IROTH for p in (out, out / "anchor.glb", out / "report.json"))


# ------------------------------------------------------------------ the manifest


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_csv_manifest_reads_as_the_commands_arguments(tmp_path):
    from backend.pipelines.batch.manifest import read_manifest

    manifest = _write(tmp_path / "shots.csv", "# a studio's shot list\n"
                      "name,command,input,mesh,method,frames,start,stride,seed,low-vram,known,bones,animation\n"
                      "shot-1,,clips/a.mp4,hero.glb,fit,16,2,,7,,,,\n"
                      ",generate,clips/b,,learned,,,2,,yes,4=k4.glb;8=/abs/k8.glb,,\n"
                      "rigged,rig,,,,,,,,,,auto,shot-1/animation.npz\n")
    rows = read_manifest(manifest)
    assert [(r.name, r.command, r.line) for r in rows] == [("shot-1", "generate", 3), ("b", "generate", 4),
                                                           ("rigged", "rig", 5)]
    assert rows[0].args == {"input": str(tmp_path / "clips" / "a.mp4"), "mesh": str(tmp_path / "hero.glb"),
                            "method": "fit", "frames": 16, "start": 2, "seed": 7}
    assert rows[1].args == {"input": str(tmp_path / "clips" / "b"), "method": "learned", "stride": 2,
                            "low_vram": True, "known": [[4, str(tmp_path / "k4.glb")], [8, "/abs/k8.glb"]]}
    assert rows[2].args == {"bones": "auto", "animation": str(tmp_path / "shot-1" / "animation.npz")}
    assert len({r.spec for r in rows}) == 3


def test_a_jsonl_manifest_takes_typed_values_and_names_prompt_rows(tmp_path):
    from backend.pipelines.batch.manifest import read_manifest

    manifest = _write(tmp_path / "m.jsonl", json.dumps({"prompt": "a horse, galloping!", "frames": 17, "fast": True,
                                                        "models-dir": "/models"}) + "\n\n" +
                      json.dumps({"command": "register", "reference": "r.obj", "sequence": "seq", "fps": "30",
                                  "method": "optimize", "name": None}) + "\n")
    first, second = read_manifest(manifest)
    assert first.name == "a-horse-galloping" and first.args == {"prompt": "a horse, galloping!", "frames": 17,
                                                                "fast": True, "models_dir": "/models"}
    assert second.name == "seq" and second.args["fps"] == 30.0 and second.line == 3


def test_the_readmes_example_manifest_reads(tmp_path):
    from backend.pipelines.batch.manifest import read_manifest

    readme = (REPO / "README.md").read_text()
    example = readme[readme.index("```csv\n", readme.index("## Many clips")) + 7:]
    rows = read_manifest(_write(tmp_path / "shots.csv", example[:example.index("```")]))
    assert [r.name for r in rows] == ["walk", "run", "wave"]
    assert rows[2].args["prompt"] == "waves its right arm, side view" and rows[1].args["frames"] == 24


@pytest.mark.parametrize("text, expected", [
    ("name,input,colour\na,x.mp4,red\n", "unknown column(s) colour; the columns are name, command"),
    ("name,input\na,x.mp4\na,y.mp4\n", "output name 'a' is used by lines 2, 3"),
    ("name,input,frames\na,x.mp4,many\n", "line 2: frames must be an integer, got 'many'"),
    ("name,input,loop\na,x.mp4,maybe\n", "loop must be true or false"),
    ("name,command,input\na,dance,x.mp4\n", "unknown command 'dance'"),
    ("name,command,input,bones\na,generate,x.mp4,16\n", "bones is not a column of a generate row"),
    ("name,input\n../up,x.mp4\n", "must be one folder name"),
    ("name,input\na,s3://bucket/clip.mp4\n", "URLs are not read directly; mount the store"),
    ("name,input\n", "has no rows"),
])
def test_a_bad_manifest_is_refused_whole_with_its_lines(tmp_path, text, expected):
    from backend.errors import BadInput
    from backend.pipelines.batch.manifest import read_manifest

    with pytest.raises(BadInput) as err:
        read_manifest(_write(tmp_path / "m.csv", text))
    assert expected in err.value.message, err.value.message


def test_the_manifests_columns_are_the_commands_arguments():
    """Every column is a keyword argument of its command's function (no column drifts from what
    the CLI and the service take), and the pin of tests/requirements.txt is the one batch names."""
    import inspect

    from backend.pipelines import COMMANDS
    from backend.pipelines.batch.engine import RAY_VERSION
    from backend.pipelines.batch.manifest import COLUMNS

    for command, columns in COLUMNS.items():
        params = inspect.signature(COMMANDS[command]).parameters
        assert set(columns) <= {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY} - {"out"}, command
    pins = [line for line in (REPO / "tests" / "requirements.txt").read_text().splitlines() if line.startswith("ray")]
    assert pins == [f"ray=={RAY_VERSION}"]


def test_a_row_is_complete_only_when_its_folder_is_whole_and_made_for_it(tmp_path):
    from backend.pipelines.batch.rows import is_complete

    folder = tmp_path / "shot"
    folder.mkdir()
    (folder / "animation.npz").write_bytes(b"x" * 10)
    (folder / "report.json").write_text(json.dumps({"batch": {"spec": "abc", "files": {"animation.npz": 10}}}))
    assert is_complete(folder, "abc")
    assert not is_complete(folder, "abd")  # the row changed: run it again
    (folder / "animation.npz").write_bytes(b"x" * 9)
    assert not is_complete(folder, "abc")  # a file cut short
    (folder / "animation.npz").unlink()
    assert not is_complete(folder, "abc") and not is_complete(tmp_path / "absent", "abc")


def test_the_bar_redraws_one_line_and_the_message_counts_rows():
    import io

    from backend.jobs import bar_sink
    from backend.pipelines.batch.progress import BatchProgress, duration

    progress = BatchProgress(8, skipped=2)
    progress.done, progress.failed, progress.running = 3, 1, 2
    progress.started -= 60.0  # 4 rows in a minute: 2 left, about 30 s
    assert progress.message() == "3 done, 1 failed, 2 running, 0 waiting of 8 (2 skipped: done before); about 30 s left"
    assert duration(95) == "1 min 40 s" and duration(3725) == "1 h 2 min"

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    sink = bar_sink(screen, width=10)
    sink("batch", 6, 8, "a")
    sink("batch", 8, 8, "b")
    assert screen.getvalue() == "\r\x1b[Kbatch [#######---] 6/8 a\r\x1b[Kbatch [##########] 8/8 b\n"


def test_gpus_asked_for_by_row():
    from backend.errors import BadInput
    from backend.pipelines.batch.engine import check_gpus, task_gpus
    from backend.pipelines.batch.manifest import Row

    fit = Row("a", "generate", {"method": "fit", "input": "x"}, 2)
    learned = Row("b", "generate", {"input": "x"}, 3)
    prompt_fit = Row("c", "generate", {"method": "fit", "prompt": "x"}, 4)
    rig = Row("d", "rig", {"animation": "x"}, 5)
    assert [task_gpus(r, 1, 4) for r in (fit, learned, prompt_fit, rig)] == [0, 1, 1, 0]
    assert task_gpus(learned, 0.5, 1) == 0.5 and task_gpus(learned, 1, 0) == 0

    class Cluster:
        gpus = 2.0

    with pytest.raises(BadInput, match="no machine of the cluster has that many"):
        check_gpus(4, Cluster())


# ------------------------------------------------------------------ the command line: bad input


def _manifest_of_one(tmp_path) -> Path:
    return _write(tmp_path / "m.csv", "name,input,mesh,method\na,/nowhere/clip,/nowhere/m.glb,fit\n")


def test_cli_bad_input_is_named(tmp_path):
    proc = run_backend("batch", tmp_path / "absent.csv", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "manifest not found" in proc.stderr, proc.stderr
    bad = _write(tmp_path / "bad.csv", "name,clip\na,x.mp4\n")
    proc = run_backend("batch", bad, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "unknown column(s) clip" in proc.stderr, proc.stderr
    proc = run_backend("batch", _manifest_of_one(tmp_path), "--out", tmp_path / "out", "--ray", "127.0.0.1:9")
    assert proc.returncode == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in proc.stderr, proc.stderr
    proc = run_backend("batch", _manifest_of_one(tmp_path), "--out", tmp_path / "out", "--retries", "-1")
    assert proc.returncode == 2 and "--retries must be an integer of at least 0" in proc.stderr, proc.stderr


def test_without_ray_batch_says_how_to_install_it(tmp_path):
    from backend.pipelines.batch.engine import RAY_VERSION

    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ray.py").write_text("raise ImportError('no ray here')\n")
    proc = run_backend("batch", _manifest_of_one(tmp_path), "--out", tmp_path / "out",
                       env={"PYTHONPATH": f"{shadow}{os.pathsep}{REPO}"})
    assert proc.returncode == 2 and f"-m pip install ray=={RAY_VERSION}" in proc.stderr, proc.stderr


# ------------------------------------------------------------------ a batch on a local Ray cluster

PROMPT = "a red dragon flapping its wings, side view"
FIT_ROWS = ("fit-0", "fit-1", "fit-2", "fit-3")


def _batch_process(manifest: Path, out: Path, *extra) -> subprocess.Popen:
    """`python -m backend batch` as a user starts it, under umask 022 (a normal shell's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return subprocess.Popen([sys.executable, "-m", "backend", "batch", str(manifest), "--out", str(out), "--json",
                             *map(str, extra)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: os.umask(0o022))


@pytest.fixture(scope="module")
def manifest(shared_examples, tmp_path_factory):
    """Seven rows: four fits of the panda (3 frames each, from different starts), a prompt row on
    the tiny video models (its clip is noise: disc masks stand in for a subject), a corrupt clip
    and a missing one. The models, masks and clips are named relative to the manifest."""
    from PIL import Image

    root = tmp_path_factory.mktemp("batch")
    proc = run_backend("models", "tiny-random", root / "models", "--with-video", env={"HF_HUB_CACHE": str(root / "hub")})
    assert proc.returncode == 0, proc.stderr
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:64, :64]
    for i in range(16):
        Image.fromarray(((xx - 30 - 0.4 * i) ** 2 + (yy - 33) ** 2 < 17 ** 2).astype(np.uint8) * 255).save(
            root / "masks" / f"{i:02d}.png")
    (root / "clips").mkdir()
    (root / "clips" / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    panda = shared_examples / "panda"
    rows = [["name", "input", "prompt", "mesh", "masks", "models-dir", "method", "frames", "start", "seed"]]
    rows += [[name, panda, "", panda / "panda.glb", "", "", "fit", 3, 4 * i, i] for i, name in enumerate(FIT_ROWS)]
    rows += [["dragon", "", PROMPT, "", "masks", "models", "learned", "", "", 7],  # the prompt has a comma: quoted
             ["corrupt", "clips/corrupt.mp4", "", panda / "panda.glb", "", "", "fit", 3, "", ""],
             ["missing", "clips/missing.mp4", "", panda / "panda.glb", "", "", "fit", 3, "", ""]]
    with open(root / "manifest.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root / "manifest.csv"


def _records(out: Path, run: str = None) -> dict:
    from backend.pipelines.batch import read_log

    entries = [e for e in read_log(out / "batch.jsonl") if e["kind"] == "row"]
    runs = list(dict.fromkeys(e["run"] for e in entries))
    return {e["name"]: e for e in entries if e["run"] == (run or runs[-1])}


@pytest.fixture(scope="module")
def first_run(manifest, tmp_path_factory):
    """The batch, with fit-0's worker killed (SIGKILL) once its row has begun writing its output."""
    out = tmp_path_factory.mktemp("batch_out") / "shots"
    proc = _batch_process(manifest, out)
    space = out / ".batch" / "rows" / "fit-0"
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        if list(space.glob("attempt-*/.out.*.partial")):  # generate's staged output has begun
            killed = json.loads((space / "started.jsonl").read_text().splitlines()[0])["pid"]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=600)
    assert killed is not None, f"fit-0 never began writing\n{stderr[-3000:]}"
    return {"returncode": proc.returncode, "summary": json.loads(stdout.strip().splitlines()[-1]), "stderr": stderr,
            "out": out, "killed": killed}


def test_every_row_runs_and_a_bad_row_fails_alone_with_its_message(first_run):
    summary, records = first_run["summary"], _records(first_run["out"])
    assert first_run["returncode"] == 1, first_run["stderr"][-3000:]  # rows failed
    assert (summary["rows"], summary["done"], summary["failed"], summary["skipped"]) == (7, 5, 2, 0), summary
    assert {n: r["status"] for n, r in records.items()} == {**{n: "done" for n in FIT_ROWS}, "dragon": "done",
                                                           "corrupt": "failed", "missing": "failed"}
    assert "corrupt.mp4: not a video OpenCV can decode" in records["corrupt"]["error"]
    assert records["missing"]["error"].startswith("input not found:") and records["missing"]["code"] == "bad_input"
    assert "failed: corrupt (manifest line 7)" in first_run["stderr"]
    for name in FIT_ROWS + ("dragon",):
        folder = first_run["out"] / name
        assert {"animation.npz", "animated.glb", "anchor.glb", "report.json"} <= {p.name for p in folder.iterdir()}
        report = json.loads((folder / "report.json").read_text())
        assert report["batch"]["name"] == name and report["batch"]["spec"] == records[name]["spec"]
        assert report["out"] == str(folder)  # the report names where the row was published
        with np.load(folder / "animation.npz") as npz:
            assert npz["offsets"].shape[0] == (16 if name == "dragon" else 3)
    assert (first_run["out"] / "dragon" / "prompt_video.mp4").is_file()
    assert not (first_run["out"] / "corrupt").exists() and not (first_run["out"] / "missing").exists()


def test_a_killed_workers_row_is_retried_and_published_whole(first_run):
    out, record = first_run["out"], _records(first_run["out"])["fit-0"]
    assert record["status"] == "done" and record["attempts"] == 2 and record["pid"] != first_run["killed"], record
    starts = [json.loads(line) for line in (out / ".batch" / "rows" / "fit-0" / "started.jsonl").read_text().splitlines()]
    assert [s["pid"] for s in starts][0] == first_run["killed"] and len(starts) == 2
    assert all(r["attempts"] == 1 for n, r in _records(out).items() if n != "fit-0")
    # Nothing of the dead attempt is left: no hidden folder beside the results, no attempt folder.
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".batch"]
    assert not list((out / ".batch" / "rows").glob("*/attempt-*"))


def test_each_row_is_recorded_with_its_time_memory_device_and_models(first_run):
    from backend.pipelines.batch import read_log

    records = _records(first_run["out"])
    for name in FIT_ROWS + ("dragon",):
        record = records[name]
        assert record["seconds"] > 0 and record["peak_rss_mib"] > 100 and record["device"] == "cpu", record
        assert record["error"] is None and record["host"] and record["line"] >= 2
    assert records["fit-0"]["models"] == {}  # fitting uses no model
    made_by = records["dragon"]["models"]
    assert made_by["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"] and {"actionmesh", "dinov2", "triposg"} <= set(made_by)
    runs = [e for e in read_log(first_run["out"] / "batch.jsonl") if e["kind"] == "run"]
    assert [r["event"] for r in runs][:2] == ["start", "end"] and runs[1]["engine"].startswith("ray 2.60.0 local")
    assert runs[1]["engine_start_seconds"] > 0


def test_published_rows_are_readable_by_the_other_users_of_the_folder(first_run):
    for name in FIT_ROWS + ("dragon",):
        folder = first_run["out"] / name
        assert _mode(folder) == 0o755, oct(_mode(folder))
        assert {_mode(p) for p in folder.iterdir()} == {0o644}, name


def test_the_terminal_shows_one_bar_for_the_batch(first_run):
    bars = [line for line in first_run["stderr"].splitlines() if line.startswith("batch [")]
    assert bars[0].startswith("batch [------------------------] 0/7 0 done, 0 failed, 0 running, 7 waiting of 7")
    assert any(" running, " in b and "left" in b for b in bars)
    assert bars[-1] == "batch [########################] 7/7 5 done, 2 failed, 0 running, 0 waiting of 7"


def test_a_second_run_skips_the_finished_rows_and_retries_the_failed(first_run, manifest):
    out = first_run["out"]
    before = {n: (out / n / "report.json").stat().st_mtime_ns for n in FIT_ROWS + ("dragon",)}
    proc = _batch_process(manifest, out)
    stdout, stderr = proc.communicate(timeout=300)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert proc.returncode == 1 and (summary["done"], summary["failed"], summary["skipped"]) == (0, 2, 5), stderr
    records = _records(out)
    assert {n: r["status"] for n, r in records.items()} == {**{n: "skipped" for n in before}, "corrupt": "failed",
                                                           "missing": "failed"}
    assert before == {n: (out / n / "report.json").stat().st_mtime_ns for n in before}  # untouched
    assert "(5 skipped: done before)" in stderr


# ------------------------------------------------------------------ the service


def _small_rows(tmp_path: Path) -> Path:
    """A manifest of quick rows needing no shared data: a register row (--method optimize on a
    3-frame sequence), a rig row (2 bones on that motion) and a rig row whose animation is missing."""
    import trimesh

    from backend.io.mesh import write_animation_npz
    from sequences import make_sequence

    seq = make_sequence(tmp_path / "seq", n_frames=3, ref_subdiv=2, frame_subdiv=3)
    ref = trimesh.load(seq["reference"], process=False, force="mesh")
    write_animation_npz(tmp_path / "motion.npz", np.asarray(ref.vertices), np.asarray(ref.faces),
                        seq["gt_vertices"] - np.asarray(ref.vertices)[None], 24.0)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"name": "reg", "command": "register", "reference": "seq/reference.obj", "sequence": "seq/sequence",
         "method": "optimize"},
        {"name": "rig", "command": "rig", "animation": "motion.npz", "bones": 2},
        {"name": "lost", "command": "rig", "animation": "absent/animation.npz"}]) + "\n")
    return manifest


def test_batch_through_the_service_reports_rows_done_failed_running(tmp_path):
    """The add-on's path: `batch` in the backend service, with register and rig rows (the other two
    commands a row may name) and a row that fails; progress events carry the counts (step/total:
    rows with an outcome of all rows); the protocol stream stays clean while Ray runs."""
    manifest = _small_rows(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    serve = subprocess.Popen([sys.executable, "-m", "backend", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path, bufsize=1)
    try:
        hello = json.loads(serve.stdout.readline())
        assert "batch" in hello["commands"]
        serve.stdin.write(json.dumps({"type": "submit", "job": "b1", "command": "batch",
                                      "args": {"manifest": str(manifest), "out": str(tmp_path / "out")}}) + "\n")
        serve.stdin.flush()
        events = []
        while not events or events[-1]["type"] not in ("result", "error"):
            events.append(json.loads(serve.stdout.readline()))  # every line is a protocol message
    finally:
        serve.stdin.close()
        serve.wait(30)
    assert events[-1]["type"] == "result", events[-1]
    result = events[-1]["outputs"]
    assert (result["done"], result["failed"], result["rows"]) == (2, 1, 3)
    assert result["failed_rows"][0]["name"] == "lost" and "absent" in result["failed_rows"][0]["error"]
    progress = [e for e in events if e["type"] == "progress"]
    assert {e["stage"] for e in progress} == {"batch"} and all(e["total"] == 3 for e in progress)
    assert progress[0]["step"] == 0 and progress[-1]["step"] == 3
    assert progress[-1]["message"] == "2 done, 1 failed, 0 running, 0 waiting of 3"
    assert any(", 1 running, " in e["message"] or ", 2 running, " in e["message"] for e in progress)
    report = json.loads((tmp_path / "out" / "reg" / "report.json").read_text())
    assert report["kind"] == "actionmesh-register" and report["animation"] == str(tmp_path / "out" / "reg" /
                                                                                  "animation.npz")
    assert (tmp_path / "out" / "rig" / "rig.npz").is_file() and (tmp_path / "out" / "reg" / "animated.glb").is_file()


def test_a_cancelled_batch_stops_its_rows_and_publishes_nothing_half_done(shared_examples, tmp_path):
    """The add-on's Cancel: the running rows are stopped (their workers with them), recorded as
    cancelled, and nothing of theirs is published; the service answers "cancelled"."""
    panda = shared_examples / "panda"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"name": f"shot-{i}", "input": str(panda), "mesh": str(panda / "panda.glb"),
                                            "method": "fit", "frames": 4}) + "\n" for i in range(2)))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    serve = subprocess.Popen([sys.executable, "-m", "backend", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path, bufsize=1)
    out = tmp_path / "out"
    try:
        json.loads(serve.stdout.readline())
        serve.stdin.write(json.dumps({"type": "submit", "job": "b2", "command": "batch",
                                      "args": {"manifest": str(manifest), "out": str(out)}}) + "\n")
        serve.stdin.flush()
        while True:
            event = json.loads(serve.stdout.readline())
            assert event["type"] in ("accepted", "progress"), event
            if event["type"] == "progress" and ", 0 running, " not in event["message"]:
                break
        serve.stdin.write(json.dumps({"type": "cancel", "job": "b2"}) + "\n")
        serve.stdin.flush()
        while event["type"] == "progress" or event["type"] == "accepted":
            event = json.loads(serve.stdout.readline())
    finally:
        serve.stdin.close()
        serve.wait(30)
    assert event == {"type": "cancelled", "job": "b2"}
    assert {r["status"] for r in _records(out).values()} == {"cancelled"}
    assert sorted(p.name for p in out.iterdir()) == [".batch", "batch.jsonl"]


def test_an_existing_cluster_runs_the_rows_with_our_code_sent_along(tmp_path):
    """--ray HOST:PORT: a cluster started elsewhere (here a Ray head in another process, token
    authentication on, its workers started in a folder without the backend) runs the rows; the
    backend reaches its workers through Ray's py_modules, as on machines that have only the
    requirements installed."""
    manifest = _small_rows(tmp_path)
    (tmp_path / "head").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    head = subprocess.Popen([sys.executable, "-c", (
        "import sys, ray\n"
        "info = ray.init(address='local', num_cpus=2, include_dashboard=False, object_store_memory=100 * 2 ** 20,"
        " log_to_driver=False, logging_level='ERROR')\n"
        "print(info.address_info['gcs_address'], flush=True)\n"
        "sys.stdin.read()\n"
        "ray.shutdown()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=env, cwd=tmp_path / "head")
    try:
        address = head.stdout.readline().strip()
        assert address, "the head did not start"
        # The driver too starts outside the repository: Ray puts its folder on the workers' path.
        proc = subprocess.run([sys.executable, "-m", "backend", "batch", str(manifest), "--out", str(tmp_path / "out"),
                               "--ray", address, "--json"], env={**env, "PYTHONPATH": str(REPO)},
                              cwd=tmp_path / "head", capture_output=True, text=True, timeout=300)
    finally:
        head.stdin.close()
        head.wait(60)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the row without its animation
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["done"], summary["failed"]) == (2, 1) and summary["engine"].startswith(f"ray 2.60.0 {address}")
    assert (tmp_path / "out" / "rig" / "rigged.glb").is_file() and (tmp_path / "out" / "reg" / "animation.npz").is_file()


# ------------------------------------------------------------------ the benchmark


def test_bench_batch_prints_rows_per_minute_for_both(shared_examples, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_backend("bench", "batch", "--rows", "2", "--frames", "2", "--panda", shared_examples / "panda",
                       "--json", out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch, local Ray" in proc.stdout and "generate in a shell loop" in proc.stdout
    figures = json.loads(out.read_text())
    assert figures["ray"]["done"] == 2 and figures["ray"]["rows_per_minute"] > 0
    assert figures["loop"]["rows_per_minute"] > 0 and figures["ray"]["start_seconds"] > 0
