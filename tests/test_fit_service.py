"""`generate --method fit` through the backend service (the add-on's path): progress per frame,
a result, and a cancel in the middle of the fit that leaves no output folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from fit_case import REPO, case_mesh, render_case


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return render_case(tmp_path_factory.mktemp("fit_service"), frames=6, size=128)


class Peer:
    def __init__(self):
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     cwd=str(REPO), bufsize=1)
        assert self.recv()["type"] == "hello"

    def send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def recv(self):
        line = self.proc.stdout.readline()
        assert line, "backend closed its stdout"
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


def _args(case, out):
    return {"input": str(case / "frames"), "mesh": str(case_mesh(case)), "out": str(out), "method": "fit",
            "camera": str(case / "camera.json")}


def test_fit_job_reports_every_frame_and_returns_its_outputs(peer, case, tmp_path):
    out = tmp_path / "out"
    peer.send({"type": "submit", "job": "f", "command": "generate", "args": _args(case, out)})
    assert peer.recv() == {"type": "accepted", "job": "f"}
    fit_steps = []
    while (message := peer.recv())["type"] == "progress":
        assert message["job"] == "f" and 0 <= message["step"] <= message["total"]
        if message["stage"] == "fit":
            fit_steps.append((message["step"], message["total"], message["message"]))
    assert message["type"] == "result", message
    fitted = [m for _, _, m in fit_steps if m.startswith("fitted frame")]
    # Frames 1..5, one message each, for each of the verdict's two fits.
    assert len(fitted) == 10 and sum(m.endswith("(second opinion)") for m in fitted) == 5, fit_steps
    steps = [s for s, _, _ in fit_steps]
    assert steps == sorted(steps) and fit_steps[-1][0] == fit_steps[-1][1]
    outputs = message["outputs"]
    for key in ("animation", "glb", "camera", "report"):
        assert os.path.isfile(outputs[key]), key
    report = json.loads(open(outputs["report"]).read())
    fit = report["fit"]  # the same layout as --method learned-fit's, and a registration's
    assert len(fit["per_frame"]) == 6 and all({"frame", "before", "after", "held"} <= set(r) for r in fit["per_frame"])
    assert {"measure", "before", "after", "held_frames", "camera_used", "camera_estimated", "camera_iou", "settings",
            "seconds"} <= set(fit)
    # The job's result carries the same report, less what only report.json keeps.
    assert message["outputs"]["fit"] == {k: v for k, v in fit.items() if k not in ("camera_used", "settings", "seconds")}
    assert message["outputs"]["fit"]["camera_estimated"] is False


def test_cancel_during_the_fit_leaves_nothing(peer, case, tmp_path):
    out = tmp_path / "out"
    peer.send({"type": "submit", "job": "c", "command": "generate", "args": _args(case, out)})
    while True:
        message = peer.recv()
        assert message["type"] in ("accepted", "progress"), message
        if message.get("stage") == "fit" and message["message"].startswith("fitted frame"):
            break
    sent = time.monotonic()
    peer.send({"type": "cancel", "job": "c"})
    while (message := peer.recv())["type"] == "progress":
        pass
    assert message == {"type": "cancelled", "job": "c"}
    assert time.monotonic() - sent < 5.0
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], list(tmp_path.iterdir())
