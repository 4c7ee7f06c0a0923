"""A batch's manifest: one job a row, as CSV (a header row) or JSON lines (one object a line).

Every column is a keyword argument of the row's command, spelt as on the command line (`low-vram`
and `low_vram` are the same column), plus two of the batch's own:

    name       the row's output folder under --out (default: from its input; unique; letters,
               digits, '.', '_', '-')
    command    generate (default), register or rig

and the commands' own (COLUMNS). Paths are read relative to the manifest's folder. What can be
checked without reading a clip or a mesh is checked here, for the whole manifest at once (an
unknown column, a command a column does not belong to, a value of the wrong type, a missing or
repeated name), so that a typo costs nothing; a row's files are read by the row, which fails
alone when one is missing or corrupt.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ...errors import BadInput

COMMANDS = ("generate", "register", "rig")
# Each command's columns and how a cell is read: path (relative to the manifest), str, int, float,
# bool, known (FRAME=MESH pairs, ';'-separated in a CSV cell), bones (an integer or "auto").
COLUMNS: Dict[str, Dict[str, str]] = {
    "generate": {"input": "path", "prompt": "str", "view": "path", "video_model": "str", "mesh": "path",
                 "masks": "path", "camera": "path", "method": "str", "start": "int", "frames": "int",
                 "stride": "int", "fps": "float", "seed": "int", "device": "str", "fast": "bool",
                 "low_vram": "bool", "models_dir": "path", "resolution": "int", "stage0_steps": "int",
                 "stage1_steps": "int", "stage1_meshes": "bool", "known": "known", "loop": "bool",
                 "refuse_mismatch": "bool"},
    "register": {"reference": "path", "sequence": "path", "method": "str", "device": "str", "fps": "float",
                 "profile": "str", "weights_dir": "path", "models_dir": "path"},
    "rig": {"animation": "path", "rig": "path", "bones": "bones", "influences": "int", "seed": "int"},
}
OWN_COLUMNS = ("name", "command")
ALL_COLUMNS = tuple(OWN_COLUMNS) + tuple(sorted({c for cols in COLUMNS.values() for c in cols}))
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESERVED_NAMES = ("batch.jsonl",)
TRUE, FALSE = ("1", "true", "yes", "y", "on"), ("0", "false", "no", "n", "off")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass
class Row:
    """One job: its output name, command and keyword arguments (paths absolute), and where it
    stands in the manifest."""

    name: str
    command: str
    args: dict
    line: int
    spec: str = field(init=False)  # a hash of command + arguments: what a published result must match

    def __post_init__(self):
        text = json.dumps({"command": self.command, "args": self.args}, sort_keys=True)
        self.spec = hashlib.sha256(text.encode()).hexdigest()[:16]


def column_name(raw: str) -> str:
    return str(raw).strip().lstrip("-").replace("-", "_").lower()


def read_manifest(path) -> List[Row]:
    """The manifest's rows, checked (BadInput naming every problem found, with its line)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"manifest not found: {path}" if not path.exists() else f"manifest {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the manifest {path}: {exc}") from None
    raw = _jsonl(text, path) if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else _csv(text, path)
    if not raw:
        raise BadInput(f"manifest {path} has no rows")
    problems: List[str] = []
    rows = []
    for line, cells in raw:
        try:
            rows.append(_row(line, cells, path.parent))
        except BadInput as exc:
            problems.append(f"line {line}: {exc.message}")
    problems += _repeated_names(rows)
    if problems:
        shown = "; ".join(problems[:12]) + (f"; and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise BadInput(f"manifest {path}: {shown}")
    return rows


def _csv(text: str, path: Path) -> list:
    reader = csv.reader(text.splitlines())
    header = None
    out = []
    for cells in reader:
        if not cells or not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [column_name(c) for c in cells]
            _check_columns(header, path, "header")
            continue
        if len(cells) > len(header):
            raise BadInput(f"manifest {path} line {reader.line_num}: {len(cells)} cells, the header names "
                           f"{len(header)} columns")
        out.append((reader.line_num, {k: v for k, v in zip(header, cells) if v.strip() != ""}))
    return out


def _jsonl(text: str, path: Path) -> list:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise BadInput(f"manifest {path} line {number} is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise BadInput(f"manifest {path} line {number}: each line must be a JSON object, got "
                           f"{type(obj).__name__}")
        cells = {column_name(k): v for k, v in obj.items() if v is not None and v != ""}
        _check_columns(list(cells), path, f"line {number}")
        out.append((number, cells))
    return out


def _check_columns(names: list, path: Path, where: str) -> None:
    unknown = sorted({n for n in names if n not in ALL_COLUMNS})
    if unknown:
        raise BadInput(f"manifest {path} {where}: unknown column(s) {', '.join(unknown)}; the columns are "
                       f"{', '.join(ALL_COLUMNS)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadInput(f"manifest {path} {where}: column(s) {', '.join(twice)} given twice")


def _row(line: int, cells: dict, base: Path) -> Row:
    command = str(cells.get("command", "generate")).strip().lower()
    if command not in COMMANDS:
        raise BadInput(f"unknown command {command!r}; a row's command is one of {', '.join(COMMANDS)}")
    columns = COLUMNS[command]
    foreign = sorted(k for k in cells if k not in columns and k not in OWN_COLUMNS)
    if foreign:
        raise BadInput(f"{', '.join(foreign)} {'is not a column' if len(foreign) == 1 else 'are not columns'} of "
                       f"a {command} row (its columns: {', '.join(columns)})")
    args = {k: _value(k, kind, cells[k], base) for k, kind in columns.items() if k in cells}
    name = str(cells["name"]).strip() if "name" in cells else _default_name(command, args)
    if not NAME.fullmatch(name or "") or name in RESERVED_NAMES:
        raise BadInput(f"output name {name!r} (the name column"
                       f"{'' if 'name' in cells else ', here taken from the input'}) must be one folder name of "
                       "letters, digits, '.', '_' and '-', starting with a letter or digit")
    return Row(name=name, command=command, args=args, line=line)


def _value(column: str, kind: str, value, base: Path):
    """A cell as its command takes it: CSV gives text, JSON lines may give the type itself."""
    if kind == "path":
        return _path(column, value, base)
    if kind == "known":
        return _known(value, base)
    if kind == "str":
        if not isinstance(value, str):
            raise BadInput(f"{column} must be text, got {value!r}")
        return value.strip()
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE or text in FALSE:
            return text in TRUE
        raise BadInput(f"{column} must be true or false, got {value!r}")
    if kind == "bones" and str(value).strip().lower() == "auto":
        return "auto"
    number = _number(column, value, float if kind == "float" else int)
    return number


def _number(column: str, value, kind):
    if isinstance(value, bool):
        raise BadInput(f"{column} must be a number, got {value!r}")
    try:
        number = kind(str(value).strip()) if isinstance(value, str) else value
        if kind is int and (not isinstance(number, int) and not float(number).is_integer()):
            raise ValueError
        return kind(number)
    except (TypeError, ValueError):
        raise BadInput(f"{column} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None


def _path(column: str, value, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{column} must be a path, got {value!r}")
    text = value.strip()
    if URL.match(text):
        raise BadInput(f"{column} {text!r}: URLs are not read directly; mount the store (s3fs, gcsfuse, rclone "
                       "mount, NFS) so that every worker sees it as a folder, and give that folder's path")
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _known(value, base: Path) -> List[list]:
    """FRAME=MESH pairs: 'F=M;F=M' (CSV), or a JSON list of such strings or [frame, mesh] pairs,
    or an object {frame: mesh}."""
    if isinstance(value, str):
        items = [part for part in value.split(";") if part.strip()]
    elif isinstance(value, dict):
        items = [[k, v] for k, v in value.items()]
    elif isinstance(value, list):
        items = value
    else:
        raise BadInput(f"known must be FRAME=MESH pairs, got {value!r}")
    out = []
    for item in items:
        frame, mesh = (item.split("=", 1) + [""])[:2] if isinstance(item, str) else (list(item) + ["", ""])[:2]
        if not str(mesh).strip():
            raise BadInput(f"known {item!r}: expected FRAME=MESH, e.g. 20=pose.glb")
        out.append([_number("a known frame", frame, int), _path("known", str(mesh), base)])
    return out


def _default_name(command: str, args: dict) -> str:
    source = {"generate": args.get("input"), "register": args.get("sequence"),
              "rig": str(Path(args["animation"]).parent) if args.get("animation") else None}[command]
    if source:
        return Path(source).stem if Path(source).suffix else Path(source).name
    if command == "generate" and args.get("prompt"):
        return re.sub(r"[^A-Za-z0-9]+", "-", args["prompt"]).strip("-")[:40] or "prompt"
    raise BadInput("the row has no name column and nothing to name it after")


def _repeated_names(rows: List[Row]) -> List[str]:
    lines: Dict[str, List[int]] = {}
    for row in rows:
        lines.setdefault(row.name.lower(), []).append(row.line)
    return [f"output name {name!r} is used by lines {', '.join(map(str, at))}: each row needs its own (the name "
            "column)" for name, at in lines.items() if len(at) > 1]


def row_by_name(rows: List[Row], name: str) -> Optional[Row]:
    return next((r for r in rows if r.name == name), None)
