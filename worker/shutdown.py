"""Wait for Ctrl-C or SIGTERM, so the caller can shut down in order instead of dying mid-step."""

from __future__ import annotations

import asyncio
import signal


async def until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
