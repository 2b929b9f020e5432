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


def approval_commands(run_id: str, request_id: str, by: str = "NAME") -> list[str]:
    temporal = _shown(temporal_cli())
    baton = _shown(temporal_cli().with_name("baton"))
    payload = json.dumps({"request_id": request_id, "by": by})
    return [
        f"{baton} approve {run_id} --request {request_id} --by {by}",
        f"{temporal} workflow signal --workflow-id {run_id} --name approve --input '{payload}'",
    ]


def awaiting_list_command() -> str:
    return f"{_shown(temporal_cli().with_name('baton'))} inbox"
