"""A step's output model, carried across the activity boundary by its import path.

The activity needs the real pydantic class, not just its JSON schema: the
answer must pass the same validators the workflow will apply, and a failed
validation must be explained back to the model in a repair turn.

A path is only ever looked up among the modules the worker has loaded (its
registered processes and what they import), never imported: a string that
reached a step cannot make the worker run a module's import-time code.
"""

from __future__ import annotations

import sys

from pydantic import BaseModel, ValidationError


class UnknownOutputType(ValueError):
    pass


def type_path(cls: type[BaseModel]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve(path: str) -> type[BaseModel]:
    module, _, qualname = path.partition(":")
    if not qualname or "<locals>" in qualname:
        raise UnknownOutputType(f"output type {path!r} must be a pydantic model defined at module level")
    found: object = sys.modules.get(module)
    if found is None:
        raise UnknownOutputType(f"output type {path!r}: module {module!r} is not one the worker's processes loaded")
    try:
        for part in qualname.split("."):
            found = getattr(found, part)
    except AttributeError as err:
        raise UnknownOutputType(f"output type {path!r} cannot be found: {err}") from err
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise UnknownOutputType(f"output type {path!r} is not a pydantic model")
    return found


def problems(output: dict | None, cls: type[BaseModel]) -> str | None:
    """What is wrong with an answer, in words a model can act on; None when it is valid."""
    if output is None:
        return "the answer was not a JSON object"
    try:
        cls.model_validate(output)
    except ValidationError as err:
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()
        )
    return None


def repair_request(cls: type[BaseModel], problem: str) -> str:
    return (
        f"Your answer does not match the {cls.__name__} schema: {problem}. "
        "Answer again with the complete, corrected answer only."
    )
