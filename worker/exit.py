"""Leave the process with a given status, without the interpreter's shutdown.

The temporalio client's native threads can outlive `asyncio.run`; when the
interpreter then finalizes, the process sometimes aborts (SIGABRT/SIGSEGV,
temporalio/sdk-python#300) after its work is done, and a script sees a crash
instead of the status `baton` or `python -m worker` chose. All output is flushed first, then we exit
at once: there is nothing left to clean up that the OS does not.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
