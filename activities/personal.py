"""The marks a contract puts on fields that hold personal data (workflows/personal.py reads them).

Here, below both workflows and activities, so the systems' contracts (activities/tools/records.py)
and the processes' contracts mark their fields the same way.
"""

from typing import Any

PERSONAL: dict[str, Any] = {"personal": True}
SUBJECT: dict[str, Any] = {"personal": True, "subject": True}  # personal, and names whom the run is about
