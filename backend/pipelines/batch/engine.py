"""Where a batch's rows run: Ray, started here (a local cluster of this machine's CPUs and GPUs) or
an existing cluster (--ray auto, --ray HOST:PORT, --ray ray://HOST:PORT).

Ray is optional: the Blender add-on's backend stays without it (about 70 MB more, and a second
process tree a user of one clip never needs); `batch` names the command that installs it.

Why Ray on one machine too (README, Many clips): the same tasks then run unchanged on a cluster;
Ray restarts a task whose worker died (max_retries) and schedules by GPU; and a worker keeps its
imports (torch, the models' code) from one row to the next, where a loop of `generate` pays them
every time. What it costs: starting the local cluster and stopping it, ENGINE_COST measured.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from ...errors import BadInput, Unsupported

# The pin of tests/requirements.txt (a test keeps the two equal). Every machine of a cluster must
# run this Ray (and the same Python); Ray refuses to connect otherwise.
RAY_VERSION = "2.60.0"
RAY_MISSING = (
    "batch runs its rows on Ray, which this backend's Python does not have. Install it with\n"
    f"    {{python}} -m pip install ray=={RAY_VERSION}\n"
    "(README, Many clips; `ray[client]` for a ray:// address)")
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding backend/
OBJECT_STORE_BYTES = 256 * 2 ** 20  # rows exchange small records; the store's minimum is 75 MiB
CONNECT_SECONDS = 5.0


def import_ray():
    try:
        import ray
    except ImportError:
        raise Unsupported(RAY_MISSING.format(python=sys.executable)) from None
    return ray


def preflight(address: Optional[str]) -> None:
    """What can be refused before anything is written: no Ray here, an address in no known form,
    a head that does not answer, Ray Client without its transport."""
    import_ray()
    if address is None or address == "auto":
        return
    if address.startswith("ray://"):
        import importlib.util

        if importlib.util.find_spec("grpc") is None:  # Ray Client's transport
            raise Unsupported(f"--ray {address} is Ray Client, which needs `pip install 'ray[client]=="
                              f"{RAY_VERSION}'` here; or run batch on a machine of the cluster with --ray auto")
    _check_reachable(address)


class Cluster:
    """`with Cluster(address) as cluster:` Ray started here (address None) or joined; shut down or
    left on exit. cluster.gpus: the most GPUs any one machine has (what one task can ask for)."""

    def __init__(self, address: Optional[str] = None):
        self.address = address
        self.ray = import_ray()
        self.start_seconds = self.stop_seconds = 0.0
        self.gpus = self.cpus = 0.0
        self.description = ""

    def __enter__(self) -> "Cluster":
        ray = self.ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to Ray's servers from our runs
        if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
            os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Ray's notices in a log file: no colour codes
        started = time.monotonic()
        quiet = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
        if self.address is None:
            # Ray's default for a cluster it starts is token authentication (a token in
            # ~/.ray/auth_token: other users of the machine cannot run code on it); kept, its notice
            # on every start left out.
            _drop_notice("ray._private.authentication.authentication_token_setup", "Token authentication is enabled")
            path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
            ray.init(address="local", include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                     runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
        else:
            self._join(**quiet)
        self.start_seconds = time.monotonic() - started
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.gpus = max((float(n["Resources"].get("GPU", 0)) for n in nodes), default=0.0)
        self.cpus = sum(float(n["Resources"].get("CPU", 0)) for n in nodes)
        where = "local" if self.address is None else self.address
        self.description = (f"ray {ray.__version__} {where}: {len(nodes)} machine{'s' if len(nodes) != 1 else ''}, "
                            f"{self.cpus:g} CPUs, {sum(float(n['Resources'].get('GPU', 0)) for n in nodes):g} GPUs")
        return self

    def _join(self, **quiet) -> None:
        """An existing cluster; our code travels with the tasks (py_modules), the nodes need the
        backend's requirements and this Ray."""
        ray, address = self.ray, self.address
        backend = PACKAGE_ROOT / "backend"
        # The tiny weights travel too (register's learned rows read them): 19 MB, said once a run.
        _drop_notice("ray._private.runtime_env.packaging", "is very large")
        try:
            ray.init(address=address, runtime_env={"py_modules": [str(backend)],
                                                   "excludes": ["__pycache__", "*.pyc", "bench/", "train/"]},
                     **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BadInput(_join_failure(address, exc)) from None

    def __exit__(self, *exc) -> None:
        started = time.monotonic()
        self.ray.shutdown()
        self.stop_seconds = time.monotonic() - started


def _join_failure(address: str, exc: BaseException) -> str:
    chain, seen = [], exc
    while seen is not None:
        chain.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    text = " ".join(chain)
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        return (f"the Ray cluster at {address} asks for its token: set RAY_AUTH_MODE=token and give the head's token "
                "(RAY_AUTH_TOKEN, or its ~/.ray/auth_token copied to this machine); README, Many clips")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
    return (f"could not join the Ray cluster at {address!r}: {first}. Start one with `ray start --head` (README, "
            "Many clips), or leave --ray out to run on this machine")


def _check_reachable(address: str) -> None:
    """HOST:PORT (or ray://HOST:PORT) answers a TCP connection within CONNECT_SECONDS; Ray itself
    would retry for a minute before it says no."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BadInput(f"--ray {address!r}: expected auto, HOST:PORT (the head's GCS, 6379 by default) or "
                       "ray://HOST:PORT (Ray Client, 10001 by default)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise BadInput(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}): is its head running "
                       "(`ray start --head` there), and is the port open from here?") from None


class _DropNotice(logging.Filter):
    def __init__(self, words: str):
        super().__init__()
        self.words = words

    def filter(self, record) -> bool:
        return self.words not in record.getMessage()


def _drop_notice(logger: str, words: str) -> None:
    """One of Ray's notices left out (once per process, however many batches it runs)."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, _DropNotice) and f.words == words for f in target.filters):
        target.addFilter(_DropNotice(words))


def task_gpus(row, gpus_per_task: float, cluster_gpus: float) -> float:
    """GPUs a row asks for: none on a cluster without them, none for the rows that never use one
    (fitting, rigs, the optimisation), else --gpus-per-task."""
    if cluster_gpus <= 0 or gpus_per_task <= 0:
        return 0.0
    method = row.args.get("method")
    if row.command == "rig" or (row.command == "generate" and method == "fit" and "prompt" not in row.args):
        return 0.0
    if row.command == "register" and method == "optimize":
        return 0.0
    return float(gpus_per_task)


def check_gpus(gpus_per_task: float, cluster: Cluster) -> None:
    if gpus_per_task < 0:
        raise BadInput(f"--gpus-per-task must be 0 or more, got {gpus_per_task}")
    if cluster.gpus > 0 and gpus_per_task > cluster.gpus:
        raise BadInput(f"--gpus-per-task {gpus_per_task:g}: no machine of the cluster has that many (the most is "
                       f"{cluster.gpus:g}); such a row would wait forever")
