"""`baton.toml`: models, prices, tiers, budgets and the systems of record.

Read by the worker only, validated at start-up; a bad file stops the worker
with one line naming the key at fault. Without a file, the built-in defaults
(offline models, modest budgets) apply.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from activities.llm.activity import LlmSettings
from activities.llm.catalog import Catalog, ModelSpec, ProviderSpec
from activities.llm.transport import HttpSettings
from activities.policy import Budget
from workflows.catalog import PROCESSES


class ConfigError(Exception):
    pass


class SystemsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    db: Path = Path(".baton/systems.db")
    seed: Path | None = Path("examples/systems.json")


class Role(BaseModel):
    """A role that may decide approvals, and the people in it (by the name they give when deciding)."""

    model_config = ConfigDict(extra="forbid")
    people: list[str] = Field(min_length=1)


def _demo_roles() -> dict[str, Role]:
    return {
        "compliance": Role(people=["compliance-officer"]),
        "compliance-lead": Role(people=["head-of-compliance"]),
    }


class BatonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    systems: SystemsConfig = SystemsConfig()
    http: HttpSettings = HttpSettings()
    llm: LlmSettings = LlmSettings()
    providers: dict[str, ProviderSpec] = {}
    models: dict[str, ModelSpec] = Field(default_factory=lambda: Catalog().models)
    tiers: dict[str, list[str]] = Field(default_factory=lambda: Catalog().tiers)
    budgets: dict[str, Budget] = Field(default_factory=lambda: {"default": Budget()})
    roles: dict[str, Role] = Field(default_factory=_demo_roles)

    def catalog(self) -> Catalog:
        return Catalog(providers=self.providers, models=self.models, tiers=self.tiers)

    def llm_timeout_s(self) -> float:
        """Long enough for every candidate of the widest tier, each with all its repair turns."""
        widest = max((len(labels) for labels in self.tiers.values()), default=1)
        per_request = self.http.timeout_s + self.http.connect_timeout_s
        return widest * (self.llm.repair_turns + 1) * per_request + 10

    def members(self) -> dict[str, list[str]]:
        return {name: role.people for name, role in self.roles.items()}

    def missing_roles(self) -> list[str]:
        """Roles a shipped process asks that no [roles] table defines (nobody could answer them)."""
        return [
            f"roles.{role}: process {name!r} asks this role, which has no [roles.{role}] table"
            for name, spec in PROCESSES.items()
            for role in getattr(spec.workflow, "roles", ())
            if role not in self.roles
        ]

    def default_budget(self) -> Budget:
        return self.budgets.get("default", Budget())


def config_path() -> Path:
    return Path(os.environ.get("BATON_CONFIG", "baton.toml"))


def load(path: Path | None = None) -> BatonConfig:
    explicit = path is not None or "BATON_CONFIG" in os.environ
    path = path or config_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: no such file")
        return BatonConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    try:
        config = BatonConfig.model_validate(raw)
        missing = config.catalog().missing_keys()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])  # empty for the catalog's cross-checks
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {where + ': ' if where else ''}{message}") from err
    if config.missing_roles():
        raise ConfigError(f"{path}: {config.missing_roles()[0]}")
    if missing:
        raise ConfigError(f"{path}: {missing[0]} (export it, or point api_key_env at the variable that holds the key)")
    return config
