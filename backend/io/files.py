"""Files and folders as a plain `open` or `mkdir` would leave them, whatever wrote them.

The backend writes through temporary files and folders (tempfile.mkstemp: 0600, mkdtemp: 0700) so
that a killed job never leaves half a result; once whole, a result gets the permissions a normal
file or folder gets (0666 / 0777 less the process's umask: usually 0644 / 0755), so that the other
users of a shared folder (a render farm's, a batch's) can read it.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read where the system shows it (Linux), else set and put back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only way to read it (briefly changed, process-wide)
    os.umask(mask)
    return mask


def as_created(path, *, directory: bool = False, umask: int | None = None) -> None:
    """`path`'s permissions as a new file (0666) or folder (0777) gets them, less the umask."""
    mask = current_umask() if umask is None else umask
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def tree_as_created(folder) -> None:
    """`folder` and everything in it as if made by mkdir and open (see as_created); links left alone."""
    mask = current_umask()
    folder = Path(folder)
    as_created(folder, directory=True, umask=mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            path = Path(root) / name
            if not path.is_symlink():
                as_created(path, directory=True, umask=mask)
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                as_created(path, umask=mask)
