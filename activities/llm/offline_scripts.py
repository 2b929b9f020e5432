"""Scripted answers for the `offline` provider.

Left to itself the offline stand-in derives every answer from the output
schema, so every case gets the same answer: a ticket about a refund and one
about a crash would both be classified by the schema's first enum member. A
script makes the stand-in deterministic *per case*: when the conversation's
first user message contains `match` (and the step asks for `output`, if
given), the script's turns are played back instead, one per assistant turn.

Scripts are also how tests drive misbehaving agents through the real engine: a
turn may propose a tool the step was never granted, act on an instruction
injected into a tool result, repeat a refund, or loop forever
(`repeat_last`), and a turn's answer is handed over as written, unvalidated,
so a script can give an invalid answer on purpose and exercise the repair
path. None of this is a model: the ledger still says `provider=offline`, and
nothing here should ever be presented as what a model would have said.

The file is JSON:

    {
      "about": "support desk demo",
      "scripts": [
        {"match": "ORD-1042", "output": "TriageDecision",
         "turns": [{"answer": {"queue": "returns", "reason": "wants a refund"}}]},
        {"match": "ORD-1042", "output": "Resolution", "repeat_last": true,
         "turns": [{"tool": "lookup_order", "arguments": {"order_id": "ORD-1042"}}]}
      ]
    }
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Turn(BaseModel):
    """One assistant turn: either the final typed answer or one proposed tool call."""

    model_config = ConfigDict(extra="forbid")

    answer: dict | None = Field(
        default=None, description="the typed final answer, returned as written (not validated)"
    )
    tool: str | None = Field(
        default=None, min_length=1, description="a tool to propose; need not be one the step offers"
    )
    arguments: dict = Field(default_factory=dict, description="the proposed tool call's arguments")

    @model_validator(mode="after")
    def _one_kind(self) -> Turn:
        if (self.answer is None) == (self.tool is None):
            raise ValueError("a turn gives exactly one of `answer` (the final answer) or `tool` (a tool call)")
        if self.tool is None and "arguments" in self.model_fields_set:
            raise ValueError("`arguments` belong to a `tool` turn, not to an `answer`")
        return self


class Script(BaseModel):
    """The turns played back for conversations whose first user message contains `match`."""

    model_config = ConfigDict(extra="forbid")

    match: str = Field(min_length=1, description="a substring of the conversation's first user message")
    output: str | None = Field(
        default=None, description="only for steps whose output model has this name; None = any step"
    )
    turns: list[Turn] = Field(min_length=1)
    repeat_last: bool = Field(
        default=False,
        description="when the turns run out, repeat the last one (a looping agent); "
        "otherwise the schema filler answers",
    )
    about: str = ""

    def turn(self, index: int) -> Turn | None:
        """The turn for the conversation's `index`-th assistant turn; None when the script is done."""
        if index < len(self.turns):
            return self.turns[index]
        return self.turns[-1] if self.repeat_last else None


class OfflineScripts(BaseModel):
    """Every script the offline provider knows, in the order they are tried."""

    model_config = ConfigDict(extra="forbid")

    scripts: list[Script]
    about: str = ""

    @classmethod
    def load(cls, path: Path) -> OfflineScripts:
        """Read a scripts file; a bad one is refused naming the file and the first bad field."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot be read: {err}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ValueError(f"{path}: {where}: {first['msg']}") from None

    def find(self, first_prompt: str, output_name: str) -> Script | None:
        """The first script whose `match` occurs in `first_prompt` and that fits this output model."""
        for script in self.scripts:
            if script.match in first_prompt and script.output in (None, output_name):
                return script
        return None
