"""Tools from MCP servers, through the official `mcp` SDK: `[mcp.servers.NAME]` in baton.toml.

A server is a stdio command (`command` + `args`) or a streamable HTTP endpoint
(`url`, with `headers_from_env` naming, per header, the environment variable
that holds its value: a secret never sits in the file). At worker start each
server's tools are listed and registered as Baton tools named `NAME.tool`, so
they pass the same grants, bounds and tool activity as any other tool.

Effects come from the tools' MCP annotations, which the server declares:
`readOnlyHint` is a read; `destructiveHint: false` with `idempotentHint` is a
write; anything else, a tool that says nothing included, is irreversible.
`[mcp.servers.NAME.tools.TOOL] effect` overrides them (the operator's word wins
over the server's).

A change is retried only when a repeat is harmless: the tool is idempotent
(`idempotentHint`, or `idempotent = true` in config), or it takes Baton's
idempotency key, in the argument `idempotency_key_argument` names (Baton fills
it; a caller may not) or in the request's `_meta` under `baton/idempotency-key`
(`idempotency_key_in_meta = true`). Any other change runs at most once: a
connection that fails before the call is sent is an error, but a call sent
and not answered has an unknown outcome, and the engine hands it to a person.

Each call opens its own session (stdio: a fresh server process; HTTP: a new
MCP session): the tool activity is synchronous and runs on a thread without an
event loop, so a per-call session needs no state shared across threads, and a
server that crashed or restarted between calls costs nothing but the next
connect. Pooling per worker is an optimisation for later, measured first.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar, Literal, Self

import httpx2
import jsonschema
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model, model_validator

from activities.tools.contracts import Contract, RecordRefused, ToolNotSent
from activities.tools.registry import Effect, ToolSpec, register

MAX_RESULT_CHARS = 16_000  # what one call may put in history: text beyond it is cut, structured content dropped
META_KEY = "baton/idempotency-key"  # a _meta name with a prefix of Baton's own, as the MCP spec asks
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class McpServerError(ValueError):
    """A server that cannot be reached, listed or used as configured: the worker does not start."""


class McpToolSettings(BaseModel):
    """`[mcp.servers.NAME.tools.TOOL]`: the operator's word on one tool, over the server's annotations."""

    model_config = ConfigDict(extra="forbid")
    effect: Effect | None = None
    idempotent: bool | None = Field(default=None, description="over the tool's idempotentHint: a repeat changes nothing")
    idempotency_key_argument: str | None = Field(
        default=None, min_length=1, description="the argument in which Baton sends its idempotency key"
    )
    idempotency_key_in_meta: bool = Field(default=False, description=f"send the key in _meta[{META_KEY!r}]")

    def retry_safe(self, effect: Effect, annotations: ToolAnnotations | None) -> bool:
        """Whether a second attempt is harmless: a read, an idempotent tool, or one told the key."""
        idempotent = self.idempotent if self.idempotent is not None else bool(annotations and annotations.idempotent_hint)
        return effect is Effect.READ or idempotent or self.idempotency_key_argument is not None or self.idempotency_key_in_meta


class McpServerSettings(BaseModel):
    """`[mcp.servers.NAME]`: a stdio command or a streamable HTTP URL, never both."""

    model_config = ConfigDict(extra="forbid")
    command: str | None = Field(default=None, min_length=1)
    args: list[str] = []
    url: str | None = Field(default=None, pattern=r"^https?://")
    headers_from_env: dict[str, str] = Field(default={}, description="header -> name of the variable holding its value")
    timeout_s: float = Field(default=30, gt=0, le=3600)
    tools: dict[str, McpToolSettings] = {}

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP)")
        if self.url is None and self.headers_from_env:
            raise ValueError("headers_from_env is for a url server")
        if self.command is None and self.args:
            raise ValueError("args is for a command server")
        for header, var in self.headers_from_env.items():
            if not ENV_NAME.match(var):
                raise ValueError(f"headers_from_env.{header}: {var!r} is no environment variable name "
                                 "(name the variable that holds the value, never the value)")
        return self

    def headers(self) -> dict[str, str]:
        """The HTTP headers, read from the environment now; a variable unset is an error naming it."""
        missing = [var for var in self.headers_from_env.values() if var not in os.environ]
        if missing:
            raise McpServerError(f"environment variable {missing[0]} is not set (headers_from_env)")
        return {header: os.environ[var] for header, var in self.headers_from_env.items()}

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[Client]:
        """A new MCP session with this server, closed (its process stopped, its HTTP client shut) on the way out."""
        async with AsyncExitStack() as stack:
            if self.command is not None:
                transport: Any = StdioServerParameters(command=self.command, args=self.args)
            else:
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=self.headers(), timeout=httpx2.Timeout(self.timeout_s)))
                transport = streamable_http_client(self.url, http_client=http)
            yield await stack.enter_async_context(Client(transport, read_timeout_seconds=self.timeout_s))


class McpSettings(BaseModel):
    """`[mcp]`: the MCP servers whose tools this worker offers (only to the grantees [grants] names)."""

    model_config = ConfigDict(extra="forbid")
    servers: dict[str, McpServerSettings] = {}

    @model_validator(mode="after")
    def _plain_names(self) -> Self:
        for name in self.servers:
            if not re.match(r"^[a-z0-9][a-z0-9_-]*$", name):
                raise ValueError(f"servers.{name}: a server's name is lowercase letters, digits, - and _ (no dots)")
        return self

    def serves(self, tool: str) -> bool:
        """Whether `tool` would come from one of these servers (its name is SERVER.tool)."""
        server, dot, _ = tool.partition(".")
        return bool(dot) and server in self.servers


class McpResult(Contract):
    """What an MCP tool answered, bounded: its text content, and its structured content when small enough."""

    text: str
    structured: dict[str, JsonValue] | None = None
    truncated: bool = False


class McpArguments(Contract):
    """Arguments of an MCP tool: the fields its schema names, and then held to that schema itself."""

    __mcp_schema__: ClassVar[dict[str, Any]] = {"type": "object"}  # the server's own, set by arguments_model

    @model_validator(mode="before")
    @classmethod
    def _server_schema(cls, data: Any) -> Any:
        schema = {"additionalProperties": False, **cls.__mcp_schema__}
        try:
            jsonschema.validate(data, schema)
        except jsonschema.ValidationError as err:
            raise ValueError(f"{'.'.join(map(str, err.absolute_path)) or 'arguments'}: {err.message}") from None
        return data


_TYPES: dict[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool,
    "array": list[JsonValue], "object": dict[str, JsonValue],
}


def arguments_model(name: str, schema: dict[str, Any], filled_by_baton: str | None = None) -> type[Contract]:
    """A strict pydantic model of a tool's JSON-schema arguments (so grants' bounds see typed fields).

    `filled_by_baton` (the idempotency key's argument) is no field: a caller,
    or a model, that sets it is refused, and the worker fills it at the call.
    """
    if schema.get("type") != "object":
        raise McpServerError(f"tool {name}: its input schema is not an object")
    if filled_by_baton is not None:
        schema = {**schema, "properties": {k: v for k, v in schema.get("properties", {}).items() if k != filled_by_baton},
                  "required": [r for r in schema.get("required", []) if r != filled_by_baton]}
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for prop, sub in schema.get("properties", {}).items():
        if not prop.isidentifier() or prop.startswith("_"):
            raise McpServerError(f"tool {name}: argument {prop!r} is not a name Baton can carry yet")
        kind = _field_type(sub if isinstance(sub, dict) else {})
        fields[prop] = (kind, ...) if prop in required else (kind | None, None)
    return create_model(f"{name}.args", __base__=McpArguments, **fields, __mcp_schema__=(ClassVar[dict[str, Any]], schema))


def _field_type(sub: dict[str, Any]) -> Any:
    """The Python type of one argument; what it cannot name, the server's schema holds (McpArguments)."""
    enum = sub.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return Literal[tuple(enum)]
    kind = sub.get("type")
    return _TYPES.get(kind, JsonValue) if isinstance(kind, str) else JsonValue


def effect_of(annotations: ToolAnnotations | None, override: Effect | None = None) -> Effect:
    """The tool's effect: config's override, else its annotations; unknown is irreversible."""
    if override is not None:
        return override
    if annotations is None:
        return Effect.IRREVERSIBLE
    if annotations.read_only_hint:
        return Effect.READ
    if annotations.destructive_hint is False and annotations.idempotent_hint:
        return Effect.WRITE
    return Effect.IRREVERSIBLE


def bounded(result: CallToolResult) -> McpResult:
    """The part of a tool's answer that goes into history: at most MAX_RESULT_CHARS of it."""
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    structured = result.structured_content
    too_big = structured is not None and len(json.dumps(structured)) > MAX_RESULT_CHARS
    return McpResult(
        text=text[:MAX_RESULT_CHARS],
        structured=None if too_big else structured,
        truncated=len(text) > MAX_RESULT_CHARS or too_big,
    )


class McpTools:
    """The MCP servers of one worker: their tools listed and registered, and called one session per call."""

    def __init__(self, settings: McpSettings) -> None:
        self._settings = settings
        self._calls: dict[str, Callable[[BaseModel, str | None], McpResult]] = {}

    async def install(self) -> None:
        """List every server's tools and register them as `NAME.tool`; McpServerError says which server failed."""
        for name, server in self._settings.servers.items():
            try:
                await self._listed(name, server)
            except McpServerError as err:
                raise McpServerError(f"mcp.servers.{name}: {err}") from None
            except Exception as err:  # an SDK, transport or process error: the worker must not start half-wired
                said = " ".join(str(err).split())[:300]  # one line, whatever the SDK or the server's process said
                raise McpServerError(f"mcp.servers.{name}: cannot list its tools: {type(err).__name__}: {said}") from None

    def implementations(self) -> dict[str, Callable[[BaseModel, str | None], McpResult]]:
        """tool name -> the callable the tool activity runs, as for a package's `@tool` methods."""
        return dict(self._calls)

    async def _listed(self, name: str, server: McpServerSettings) -> None:
        async with server.connected() as client:
            tools, cursor = [], None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools += page.tools
                cursor = page.next_cursor
                if cursor is None:
                    break
        listed = {t.name for t in tools}
        unknown = sorted(set(server.tools) - listed)
        if unknown:
            raise McpServerError(f"tools.{unknown[0]}: the server lists no such tool (it lists: {', '.join(sorted(listed))})")
        for t in tools:
            own = server.tools.get(t.name, McpToolSettings())
            if own.idempotency_key_argument and own.idempotency_key_argument not in t.input_schema.get("properties", {}):
                raise McpServerError(f"tools.{t.name}.idempotency_key_argument: the tool has no argument "
                                     f"{own.idempotency_key_argument!r}")
            full, effect = f"{name}.{t.name}", effect_of(t.annotations, own.effect)
            register(ToolSpec(
                full, effect, arguments_model(full, t.input_schema, own.idempotency_key_argument), McpResult,
                t.description or "", f"mcp:{name}:{t.name}", own.retry_safe(effect, t.annotations),
            ))
            self._calls[full] = self._caller(server, t.name, own)

    @staticmethod
    def _caller(server: McpServerSettings, tool: str, own: McpToolSettings) -> Callable[[BaseModel, str | None], McpResult]:
        def call(args: BaseModel, key: str | None) -> McpResult:
            """Run on the tool activity's thread (no event loop there): one session for this one call."""
            arguments = args.model_dump(mode="json", exclude_none=True)
            if own.idempotency_key_argument and key is not None:
                arguments[own.idempotency_key_argument] = key
            meta = {META_KEY: key} if own.idempotency_key_in_meta and key is not None else None
            return asyncio.run(_call(server, tool, arguments, meta))

        return call


async def _call(server: McpServerSettings, tool: str, arguments: dict, meta: dict | None) -> McpResult:
    """Call `tool` in a new session; ToolNotSent if the session could not be opened (nothing was sent)."""
    async with AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(server.connected())
        except Exception as err:  # no session, so no call: safe to say so, and to try again
            said = " ".join(str(err).split())[:300]
            raise ToolNotSent(f"no session with the MCP server: {type(err).__name__}: {said}") from None
        result = await client.call_tool(tool, arguments, meta=meta)
    if result.is_error:
        answer = bounded(result).text[:500]
        raise RecordRefused(f"the MCP server answered an error: {answer}")
    return bounded(result)
