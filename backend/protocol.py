"""The JSON-lines protocol between the Blender add-on and `python -m backend serve`.

One JSON object per line, UTF-8, each with a "type". The backend speaks first with a hello that
carries PROTOCOL_VERSION; a client that does not know that version must not submit work.

client -> backend
  {"type": "submit", "job": ID, "command": NAME, "args": {...}}
  {"type": "cancel", "job": ID}
  {"type": "ping", "nonce": ANY}
  {"type": "shutdown"}
backend -> client
  {"type": "hello", "protocol": 2, "backend": VERSION, "pid": INT, "commands": [...]}
  {"type": "accepted", "job": ID}
  {"type": "progress", "job": ID, "stage": STR, "step": INT, "total": INT, "message": STR}
  {"type": "result", "job": ID, "outputs": {...}}
  {"type": "error", "job": ID|null, "code": STR, "message": STR}
  {"type": "cancelled", "job": ID}
  {"type": "pong", "nonce": ANY}

Bulk data never travels on this channel: args and outputs carry paths into a job directory.
The add-on keeps its own copy of PROTOCOL_VERSION (it never imports the backend); a test keeps
the two equal.
"""

from __future__ import annotations

import json

# 2: one vocabulary (method names learned-fit / learned-optimize, every fit reported in one shape
# under "fit"); a client of version 1 would send "auto" and read "frame_fit".
PROTOCOL_VERSION = 2

CLIENT_TYPES = ("submit", "cancel", "ping", "shutdown")


class ProtocolError(ValueError):
    """A line that is not a valid client message; answered with an error, never fatal."""


def encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n"


def decode_client_message(line: str) -> dict:
    try:
        message = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a JSON line ({exc.msg if hasattr(exc, 'msg') else exc}): {line[:80]!r}")
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(f"unknown message type {kind!r}; expected one of {', '.join(CLIENT_TYPES)}")
    if kind in ("submit", "cancel") and not isinstance(message.get("job"), str):
        raise ProtocolError(f"a {kind} message needs a string 'job' id")
    if kind == "submit":
        if not isinstance(message.get("command"), str):
            raise ProtocolError("a submit message needs a string 'command'")
        if not isinstance(message.get("args", {}), dict):
            raise ProtocolError("a submit message's 'args' must be an object")
    return message
