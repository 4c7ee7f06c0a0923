"""The backend service over its real stdio protocol, in a real subprocess."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blender_harness import REPO
from sequences import make_sequence

from backend.protocol import PROTOCOL_VERSION


def _load_client():
    # Loaded by path: importing the add-on package itself would import bpy into the test process.
    spec = importlib.util.spec_from_file_location("am_backend_client", REPO / "actionmesh_blender" / "backend_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


client = _load_client()


class Raw:
    """A bare protocol peer: lines in, lines out, no client library in between."""

    def __init__(self):
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     cwd=str(REPO), bufsize=1)

    def send(self, obj):
        self.proc.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        self.proc.stdin.flush()

    def recv(self):
        line = self.proc.stdout.readline()
        assert line, "backend closed its stdout"
        return json.loads(line)

    def until(self, kind):
        while True:
            message = self.recv()
            if message["type"] == kind:
                return message

    def close(self):
        self.proc.stdin.close()
        return self.proc.wait(10)


@pytest.fixture
def raw():
    peer = Raw()
    yield peer
    if peer.proc.poll() is None:
        peer.proc.kill()


def test_hello_names_protocol_version_shared_with_addon(raw):
    hello = raw.recv()
    assert hello["type"] == "hello" and hello["protocol"] == PROTOCOL_VERSION
    assert client.PROTOCOL_VERSION == PROTOCOL_VERSION
    assert "register" in hello["commands"] and hello["pid"] == raw.proc.pid


def test_garbage_lines_are_answered_and_survived(raw):
    raw.recv()
    for junk in ["not json", "[1,2,3]", '{"type":"launch"}', '{"type":"submit"}', "\x00\x01 bytes", '{"type": "submit", "job": "j", "command": "register", "args": 5}']:
        raw.send(junk)
        reply = raw.recv()
        assert reply["type"] == "error" and reply["code"] == "bad_message", (junk, reply)
    raw.send({"type": "ping", "nonce": 7})
    assert raw.recv() == {"type": "pong", "nonce": 7}
    raw.send({"type": "submit", "job": "j1", "command": "nope"})
    assert raw.recv()["code"] == "unknown_command"
    raw.send({"type": "submit", "job": "j2", "command": "register", "args": {"reference": "x", "bogus": 1}})
    reply = raw.recv()
    assert reply["code"] == "bad_input" and "bogus" in reply["message"]


def test_job_progress_result_and_exit_on_stdin_close(raw, tmp_path):
    seq = make_sequence(tmp_path, n_frames=3)
    raw.recv()
    raw.send({"type": "submit", "job": "a", "command": "register",
              "args": {"reference": str(seq["reference"]), "sequence": str(seq["sequence"]), "out": str(tmp_path / "out")}})
    assert raw.recv() == {"type": "accepted", "job": "a"}
    stages = []
    while True:
        message = raw.recv()
        if message["type"] != "progress":
            break
        assert message["job"] == "a" and 0 <= message["step"] <= message["total"]
        stages.append(message["stage"])
    assert message["type"] == "result", message
    assert {"load", "register", "write"} <= set(stages)
    data = np.load(message["outputs"]["animation"])
    assert data["offsets"].shape == (3, 642, 3)
    started = time.monotonic()
    assert raw.close() == 0 and time.monotonic() - started < 3


def test_cancel_is_honoured_within_a_second_and_busy_refused(raw, tmp_path):
    seq = make_sequence(tmp_path, n_frames=40, ref_subdiv=4, frame_subdiv=5)
    raw.recv()
    args = {"reference": str(seq["reference"]), "sequence": str(seq["sequence"]), "out": str(tmp_path / "out")}
    raw.send({"type": "submit", "job": "long", "command": "register", "args": args})
    raw.until("accepted")
    while raw.recv().get("stage") != "register":
        pass
    raw.send({"type": "submit", "job": "second", "command": "register", "args": args})
    assert raw.until("error")["code"] == "busy"
    sent = time.monotonic()
    raw.send({"type": "cancel", "job": "long"})
    assert raw.until("cancelled") == {"type": "cancelled", "job": "long"}
    assert time.monotonic() - sent < 1.0
    assert not (tmp_path / "out" / "animation.npz").exists()
    raw.send({"type": "ping", "nonce": 1})
    assert raw.until("pong")["nonce"] == 1


def test_client_reports_a_killed_backend(tmp_path):
    seq = make_sequence(tmp_path, n_frames=40, ref_subdiv=4, frame_subdiv=5)
    backend = client.BackendProcess(sys.executable, env=dict(os.environ, PYTHONPATH=""))
    job = client.Job(backend, "register", {"reference": str(seq["reference"]), "sequence": str(seq["sequence"]),
                                           "out": str(tmp_path / "out")})
    killed = []

    def kill_once(j):
        if j.stage == "register" and not killed:
            os.kill(backend.pid, signal.SIGKILL)
            killed.append(True)

    job.wait(on_update=kill_once)
    assert killed and job.state == "failed" and job.error_code == "backend_died"
    assert not backend.alive()


def test_client_stop_leaves_no_process():
    backend = client.BackendProcess(sys.executable, env=dict(os.environ, PYTHONPATH=""))
    pid = backend.pid
    backend.stop()
    assert not backend.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_client_refuses_missing_interpreter():
    with pytest.raises(client.BackendUnavailable, match="not found"):
        client.BackendProcess("/nonexistent/python")
