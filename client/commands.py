"""The exact commands a person types to answer an approval, with `baton` or plain `temporal`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from worker.binaries import temporal_cli


def _shown(path: Path) -> str:
    """A binary as a person would type it: bare if PATH finds this one, else a relative path."""
    if shutil.which(path.name) and Path(shutil.which(path.name)).resolve() == path.resolve():
        return path.name
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def approval_commands(run_id: str, request_id: str) -> list[str]:
    """Both decide as whoever the token proves: BATON_TOKEN, or the one `baton login NAME` stored."""
    temporal = _shown(temporal_cli())
    baton = _shown(temporal_cli().with_name("baton"))
    payload = json.dumps({"request_id": request_id, "token": "$BATON_TOKEN"}).replace('"', '\\"')
    return [
        f"{baton} approve {run_id} --request {request_id}",
        f'{temporal} workflow signal --workflow-id {run_id} --name approve --input "{payload}"',
    ]


def awaiting_list_command() -> str:
    return f"{_shown(temporal_cli().with_name('baton'))} inbox"
