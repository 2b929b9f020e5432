"""A step's output model, carried across the activity boundary by a stable name.

The activity needs the real pydantic class, not just its JSON schema: the
answer must pass the same validators the workflow will apply, and a failed
validation must be explained back to the model in a repair turn.

A name is only ever looked up here, among the models registered when the
worker installed its processes (`<process>.<ClassName>`, workflows/registry.py),
never imported: a string that reached a step cannot make the worker run a
module's import-time code, and a model can move between modules without
breaking runs in flight. Steps recorded before names existed carry the
model's old import path ("workflows.onboarding:WelcomeEmail"); their package
maps each one to its model as a legacy alias.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


class UnknownOutputType(ValueError):
    pass


class OutputTypes:
    """Stable name -> model, and the old import paths runs in flight may still name."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[BaseModel]] = {}
        self._legacy: dict[str, str] = {}

    def register(self, cls: type[BaseModel], name: str, legacy: tuple[str, ...] = ()) -> str:
        """Give `cls` the name `name` (and old paths `legacy`); another model under a taken name is refused.

        A module imported again (a package reloaded) brings the same definition: its class takes the name over.
        """
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise UnknownOutputType(f"output type {name!r}: {cls!r} is not a pydantic model")
        for taken in (name, *legacy):
            known = self._by_name.get(self._legacy.get(taken, taken))
            if known is not None and not _same(known, cls):  # the same definition imported again is the same model
                raise UnknownOutputType(f"output type name {taken!r} is taken by {known.__module__}.{known.__qualname__}")
        self._by_name[name] = cls
        self._legacy.update(dict.fromkeys(legacy, name))
        return name

    def name(self, cls: type[BaseModel], owner: str | None = None) -> str:
        """The name `cls` travels by: its owner's (`<process>.<ClassName>`) if registered, else any it has.

        A model defined in a workflow module is another class object in each
        sandboxed run than the one registered: the same definition (module and
        qualified name) is the same model.
        """
        top = (owner or "").partition("/")[0]
        if _same(self._by_name.get(f"{top}.{cls.__name__}"), cls):
            return f"{top}.{cls.__name__}"
        for name, known in self._by_name.items():
            if _same(known, cls):
                return name
        raise UnknownOutputType(
            f"output type {cls.__name__} is not registered: list it in the process's `outputs`"
        )

    def resolve(self, name: str) -> type[BaseModel]:
        """The model a name (or a legacy import path) stands for; never imports anything."""
        found = self._by_name.get(self._legacy.get(name, name))
        if found is None:
            raise UnknownOutputType(f"output type {name!r} is not one the worker's processes loaded: only registered names resolve")
        return found


def _same(known: type | None, cls: type) -> bool:
    return known is cls or (known is not None and (known.__module__, known.__qualname__) == (cls.__module__, cls.__qualname__))


OUTPUT_TYPES = OutputTypes()  # filled when the worker installs its processes, before any step runs
register = OUTPUT_TYPES.register
type_name = OUTPUT_TYPES.name
resolve = OUTPUT_TYPES.resolve


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
