#!/usr/bin/env python3
"""Developer entry point (stdlib only): setup, test, demo, extension.

    python3 build.py setup      # ./.venv with the backend, test and Blender (bpy) dependencies
    python3 build.py test       # setup, then the whole test suite
    python3 build.py demo       # setup, then the main job end to end in headless Blender
    python3 build.py extension  # dist/actionmesh-<version>.zip, built and validated by Blender's tools
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
# Blender 4.2 LTS as a second bpy, installed beside the venv's 5.0 and put first on PYTHONPATH
# by the tests that run against it.
BPY_42_DIR = VENV / "bpy-4.2"
BPY_42 = "bpy==4.2.23"
REQUIREMENTS = [ROOT / "backend" / "requirements.txt", ROOT / "tests" / "requirements.txt"]
STAMP = VENV / ".setup-stamp"
# Real animated characters for the registration benchmark and tests: the MD2 folder of Debian's
# assimp-testmodels package (Irrlicht's sydney and faerie, zlib-style licence), unpacked here.
# backend/synthetic/md2.py looks for them in this folder.
MD2_DIR = VENV / "share" / "assimp-testmodels" / "MD2"
MD2_PACKAGE = "assimp-testmodels"


def _run(cmd: list, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def _python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        sys.exit("error: Python 3.11 is needed (bpy wheels exist only for it); install python3.11")
    return found


def _setup_fingerprint() -> str:
    h = hashlib.sha256()
    for req in REQUIREMENTS:
        h.update(req.read_bytes())
    h.update(BPY_42.encode())
    return h.hexdigest()


def fetch_md2() -> None:
    """Unpack the MD2 characters of Debian's assimp-testmodels into MD2_DIR (once).

    Uses `apt-get download` (no root needed once the package lists exist; as root it refreshes
    them when the first try fails). Where there is no apt, it says so: the tests that need the
    characters then skip with that reason, except in CI, where they fail."""
    if (MD2_DIR / "sydney.md2").is_file() and (MD2_DIR / "faerie.md2").is_file():
        return
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        print(f"note: no apt-get/dpkg-deb here: the MD2 characters ({MD2_PACKAGE}) are not installed; "
              "their benchmark rows and tests are skipped", flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        download = ["apt-get", "download", "-q", MD2_PACKAGE]
        ok = subprocess.run(download, cwd=tmp).returncode == 0
        if not ok and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"])
            ok = subprocess.run(download, cwd=tmp).returncode == 0
        debs = sorted(Path(tmp).glob(f"{MD2_PACKAGE}_*.deb"))
        if not ok or not debs:
            print(f"note: could not download {MD2_PACKAGE}; the MD2 characters' benchmark rows and tests are "
                  "skipped", flush=True)
            return
        _run(["dpkg-deb", "-x", debs[0], Path(tmp) / "x"])
        src = Path(tmp) / "x" / "usr" / "share" / "assimp" / "models" / "MD2"
        MD2_DIR.mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            if item.suffix in (".md2", ".txt", ".bmp"):
                shutil.copy2(item, MD2_DIR / item.name)


def setup() -> None:
    """Create ./.venv and install everything; a no-op when nothing changed since the last run."""
    fingerprint = _setup_fingerprint()
    if VENV_PY.exists() and STAMP.exists() and STAMP.read_text() == fingerprint and BPY_42_DIR.is_dir():
        fetch_md2()
        return
    if not VENV_PY.exists():
        _run([_python311(), "-m", "venv", VENV])
    pip = [VENV_PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    args = []
    for req in REQUIREMENTS:
        args += ["-r", req]
    _run(pip + args)
    _run(pip + ["--no-deps", "--upgrade", "--target", BPY_42_DIR, BPY_42])
    STAMP.write_text(fingerprint)
    fetch_md2()


def manifest() -> dict:
    import tomllib  # 3.11+; imported late so an older python3 still reaches the version message

    with open(ROOT / "blender_manifest.toml", "rb") as f:
        return tomllib.load(f)


def blender_ext_tool() -> Path:
    """Blender's own extension builder/validator, shipped inside the bpy wheel."""
    found = sorted(VENV.glob("lib/python3.11/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit("error: blender_ext.py not found in the bpy wheel; run `python3 build.py setup`")
    return found[-1]


# Top-level folders of backend/ the extension leaves out (developer tools).
EXTENSION_SKIPS = ("bench", "train")


def _copy_tree(src: Path, dst: Path, skip=()) -> None:
    """src into dst, without caches, hidden files or the top-level folders named in `skip`."""
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")

    def ignore(folder, names):
        out = set(junk(folder, names))
        if Path(folder) == src:
            out |= {n for n in names if n in skip}
        return out

    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)


def stage_extension(stage: Path) -> None:
    """What the extension zip holds, laid out in `stage`: the add-on, the backend beside it,
    the manifest and the licence. Benchmarks and training are for developers and stay in the
    repository (the CLI says so where it refers to them): the extension carries what Blender
    users run."""
    stage.mkdir(parents=True, exist_ok=True)
    _copy_tree(ROOT / "actionmesh_blender", stage)
    _copy_tree(ROOT / "backend", stage / "backend", skip=EXTENSION_SKIPS)
    for name in ("blender_manifest.toml", "LICENSE"):
        shutil.copy2(ROOT / name, stage / name)


def extension() -> Path:
    """Stage the add-on with the backend code beside it, then build and validate with Blender's tool."""
    setup()
    info = manifest()
    stage = ROOT / "build" / "extension"
    shutil.rmtree(stage, ignore_errors=True)
    stage_extension(stage)
    dist = ROOT / "dist"
    dist.mkdir(exist_ok=True)
    out = dist / f"{info['id']}-{info['version']}.zip"
    out.unlink(missing_ok=True)
    tool = blender_ext_tool()
    _run([VENV_PY, tool, "build", "--source-dir", stage, "--output-filepath", out])
    _run([VENV_PY, tool, "validate", out])
    print(f"extension: {out}")
    return out


def test(pytest_args: list[str]) -> int:
    setup()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([str(VENV_PY), "-m", "pytest", "tests", *pytest_args], cwd=ROOT, env=env).returncode


def demo() -> int:
    zip_path = extension()
    out = ROOT / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
               BLENDER_USER_RESOURCES=str(out / "blender_user"),
               ACTIONMESH_BACKEND_PYTHON=str(VENV_PY))
    return subprocess.run([str(VENV_PY), str(ROOT / "tools" / "blender_demo.py"), "--extension", str(zip_path),
                           "--out", str(out)], cwd=ROOT, env=env).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "test", "demo", "extension"])
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="for test: extra pytest arguments")
    args = parser.parse_args(argv)
    if args.command == "setup":
        setup()
        return 0
    if args.command == "test":
        return test(args.rest)
    if args.command == "demo":
        return demo()
    extension()
    return 0


if __name__ == "__main__":
    sys.exit(main())
