"""Scripted answers for the offline provider.

Scripts make the stand-in answer differently per case and let tests drive
misbehaving agents (ungranted tools, loops, invalid answers) through the real
model activity. A bad scripts file must be refused naming the file and the
field, and a conversation no script matches must be answered exactly as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field
from temporalio.testing import ActivityEnvironment

from activities.llm.activity import ModelActivities
from activities.llm.catalog import Catalog, ModelSpec, Price
from activities.llm.contracts import LlmRequest
from activities.llm.conversation import Conversation, Message, ToolSchema, ToolUse
from activities.llm.offline import OfflineProvider
from activities.llm.offline_scripts import OfflineScripts, Script, Turn
from activities.llm.output_type import register

SPEC = ModelSpec(provider="offline", name="offline-test", price=Price(input=1.0, output=2.0))
CATALOG = Catalog(
    models={"cheap": ModelSpec(provider="offline", name="cheap-v1", price=Price(input=2.0, output=10.0))},
    tiers={"fast": ["cheap"]},
)


class TriageDecision(BaseModel):
    queue: Literal["general", "returns", "technical"]
    reason: str = Field(min_length=1)


class Resolution(BaseModel):
    reply: str = Field(min_length=1)
    refunded: bool


RETURNS = "Ticket T-1: ORD-1042 arrived broken, I want my money back"
CRASH = "Ticket T-2: the app crashes when I open settings"


def conversation(prompt: str, output: type[BaseModel], *later: Message, tools: list[str] = ()) -> Conversation:
    return Conversation(
        messages=[Message(role="user", content=prompt), *later],
        output_name=output.__name__,
        output_schema=output.model_json_schema(),
        tools=[ToolSchema(name=t) for t in tools],
    )


def proposal(call_id: str, name: str, **arguments) -> Message:
    return Message(role="assistant", tool_uses=[ToolUse(id=call_id, name=name, arguments=arguments)])


def result(call_id: str, content: str) -> Message:
    return Message(role="tool", tool_use_id=call_id, content=content)


def scripts(*items: dict) -> OfflineScripts:
    return OfflineScripts.model_validate({"scripts": list(items)})


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "scripts.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# ------------------------------------------------------------------------ loading


async def test_load_reads_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "about": "support desk",
        "scripts": [
            {"match": "ORD-1042", "output": "TriageDecision", "about": "a refund",
             "turns": [{"answer": {"queue": "returns", "reason": "refund"}}]},
            {"match": "ORD-1042", "repeat_last": True,
             "turns": [{"tool": "lookup_order", "arguments": {"order_id": "ORD-1042"}}, {"tool": "noop"}]},
        ],
    })
    loaded = OfflineScripts.load(path)
    assert loaded.about == "support desk"
    first, second = loaded.scripts
    assert (first.output, first.repeat_last, first.about) == ("TriageDecision", False, "a refund")
    assert first.turns == [Turn(answer={"queue": "returns", "reason": "refund"})]
    assert second.output is None and second.repeat_last
    assert second.turns[0] == Turn(tool="lookup_order", arguments={"order_id": "ORD-1042"})
    assert second.turns[1].arguments == {}


def test_load_a_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(ValueError) as caught:
        OfflineScripts.load(path)
    assert str(caught.value) == f"{path}: no such file"


def test_load_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '{"scripts": [')
    with pytest.raises(ValueError, match="not valid JSON") as caught:
        OfflineScripts.load(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("content", "where", "why"),
    [
        (
            {"scripts": [{"match": "x", "turns": [{"answer": {}, "tool": "lookup_order"}]}]},
            "scripts.0.turns.0", "exactly one of `answer`",
        ),
        (
            {"scripts": [{"match": "x", "turns": [{"answer": {"a": 1}}, {}]}]},
            "scripts.0.turns.1", "exactly one of `answer`",
        ),
        ({"scripts": [{"match": "x", "turns": []}]}, "scripts.0.turns", "at least 1"),
        ({"scripts": [{"match": "", "turns": [{"tool": "t"}]}]}, "scripts.0.match", "at least 1"),
        ({"scripts": [{"match": "x", "turn": [{"tool": "t"}]}]}, "scripts.0.turns", "required"),
        (
            {"scripts": [{"match": "x", "turns": [{"tool": "t", "args": {}}]}]},
            "scripts.0.turns.0.args", "not permitted",
        ),
        (
            {"scripts": [{"match": "x", "turns": [{"answer": {"a": 1}, "arguments": {"b": 2}}]}]},
            "scripts.0.turns.0", "`arguments` belong to a `tool` turn",
        ),
        ({"scripts": [], "version": 2}, "version", "not permitted"),
        ({"scripts": [{"match": "x", "turns": [{"answer": [1, 2]}]}]}, "scripts.0.turns.0.answer", "dict"),
    ],
    ids=[
        "answer-and-tool", "neither", "empty-turns", "empty-match", "misspelt-turns",
        "unknown-turn-key", "arguments-on-answer", "unknown-top-key", "answer-not-object",
    ],
)
def test_load_refuses_bad_content_naming_file_and_field(
    tmp_path: Path, content: dict, where: str, why: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ValueError) as caught:
        OfflineScripts.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {where}: "), message
    assert why in message


def test_turn_refuses_both_and_neither_in_code_too() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Turn(answer={"a": 1}, tool="t")
    with pytest.raises(ValueError, match="exactly one"):
        Turn()
    assert Turn(answer={}).answer == {}  # an empty answer is still an answer


# --------------------------------------------------------------------------- find


def test_find_honours_match_output_and_file_order() -> None:
    book = scripts(
        {"match": "ORD-1042", "output": "TriageDecision", "about": "triage", "turns": [{"answer": {}}]},
        {"match": "ORD-1042", "about": "any step", "turns": [{"answer": {}}]},
        {"match": "ORD", "about": "shadowed for ORD-1042", "turns": [{"answer": {}}]},
        {"match": "crashes", "output": "Resolution", "about": "crash resolution", "turns": [{"answer": {}}]},
    )
    assert book.find(RETURNS, "TriageDecision").about == "triage"
    assert book.find(RETURNS, "Resolution").about == "any step"
    assert book.find("about ORD-7", "TriageDecision").about == "shadowed for ORD-1042"
    assert book.find(CRASH, "Resolution").about == "crash resolution"
    assert book.find(CRASH, "TriageDecision") is None
    assert book.find("nothing to see", "TriageDecision") is None
    assert book.find("", "TriageDecision") is None


async def test_only_the_first_user_message_is_matched() -> None:
    book = scripts({"match": "ORD-1042", "turns": [{"answer": {"queue": "returns", "reason": "r"}}]})
    later = Message(role="user", content="about ORD-1042 again")
    done = await OfflineProvider(book).complete(conversation(CRASH, TriageDecision, later), SPEC)
    assert done.output != {"queue": "returns", "reason": "r"}
    TriageDecision.model_validate(done.output)  # the schema filler answered


# ------------------------------------------------------------------- the provider


async def test_answers_differ_per_case() -> None:
    book = scripts(
        {"match": "ORD-1042", "turns": [{"answer": {"queue": "returns", "reason": "wants a refund"}}]},
        {"match": "crashes", "turns": [{"answer": {"queue": "technical", "reason": "a crash"}}]},
    )
    provider = OfflineProvider(book)
    returns = await provider.complete(conversation(RETURNS, TriageDecision), SPEC)
    crash = await provider.complete(conversation(CRASH, TriageDecision), SPEC)
    assert returns.output == {"queue": "returns", "reason": "wants a refund"}
    assert crash.output["queue"] == "technical"
    assert json.loads(returns.message.content) == returns.output
    assert returns.message.role == "assistant" and returns.message.tool_uses == []


async def test_turn_index_is_the_number_of_assistant_messages() -> None:
    book = scripts({"match": "ORD-1042", "turns": [
        {"tool": "lookup_order", "arguments": {"order_id": "ORD-1042"}},
        {"tool": "issue_refund", "arguments": {"order_id": "ORD-1042", "amount": 20}},
        {"answer": {"reply": "Refunded.", "refunded": True}},
    ]})
    provider = OfflineProvider(book)
    tools = ["lookup_order", "issue_refund"]

    first = await provider.complete(conversation(RETURNS, Resolution, tools=tools), SPEC)
    assert first.output is None and first.message.content == ""
    assert first.message.tool_uses == [ToolUse(id="offline-call-0", name="lookup_order",
                                               arguments={"order_id": "ORD-1042"})]

    after_one = conversation(
        RETURNS, Resolution,
        proposal("offline-call-0", "lookup_order", order_id="ORD-1042"),
        result("offline-call-0", '{"status": "delivered", "total": 20}'),
        tools=tools,
    )
    second = await provider.complete(after_one, SPEC)
    assert second.message.tool_uses == [ToolUse(id="offline-call-1", name="issue_refund",
                                                arguments={"order_id": "ORD-1042", "amount": 20})]

    after_two = after_one.model_copy(update={"messages": [
        *after_one.messages,
        proposal("offline-call-1", "issue_refund", order_id="ORD-1042", amount=20),
        result("offline-call-1", '{"refund": "R-9"}'),
    ]})
    third = await provider.complete(after_two, SPEC)
    assert third.output == {"reply": "Refunded.", "refunded": True}
    assert third.message.tool_uses == []

    # tool results and extra user messages do not count; only assistant turns do
    noisy = conversation(
        RETURNS, Resolution,
        Message(role="user", content="also: hurry"),
        result("stray", "ignored"),
        tools=tools,
    )
    assert (await provider.complete(noisy, SPEC)).message.tool_uses[0].id == "offline-call-0"


async def test_repeat_last_loops_forever() -> None:
    book = scripts({"match": "ORD-1042", "repeat_last": True, "turns": [
        {"answer": {"reply": "not yet", "refunded": False}},
        {"tool": "lookup_order", "arguments": {"order_id": "ORD-1042"}},
    ]})
    provider = OfflineProvider(book)
    messages: list[Message] = []
    seen = []
    for i in range(6):
        done = await provider.complete(conversation(RETURNS, Resolution, *messages, tools=["lookup_order"]), SPEC)
        if i == 0:
            assert done.output == {"reply": "not yet", "refunded": False}
            messages += [done.message, Message(role="user", content="keep going")]
            continue
        assert done.output is None
        (use,) = done.message.tool_uses
        seen.append((use.id, use.name, use.arguments))
        messages += [done.message, result(use.id, "{}")]
    assert seen == [(f"offline-call-{i}", "lookup_order", {"order_id": "ORD-1042"}) for i in range(1, 6)]


async def test_without_repeat_last_the_schema_filler_answers_once_the_turns_run_out() -> None:
    book = scripts({"match": "ORD-1042", "turns": [{"tool": "lookup_order"}]})
    provider = OfflineProvider(book)
    later = conversation(RETURNS, Resolution, proposal("offline-call-0", "lookup_order"),
                         result("offline-call-0", "{}"), tools=["lookup_order"])
    done = await provider.complete(later, SPEC)
    unscripted = await OfflineProvider().complete(later, SPEC)
    assert done.message.tool_uses == []
    assert done.output == unscripted.output
    assert (done.usage.input, done.usage.output) == (unscripted.usage.input, unscripted.usage.output)
    Resolution.model_validate(done.output)


async def test_an_ungranted_tool_is_proposed_as_written() -> None:
    book = scripts({"match": "ORD-1042", "turns": [
        {"tool": "delete_customer", "arguments": {"customer_id": "C-1", "reason": "the tool result said so"}},
    ]})
    done = await OfflineProvider(book).complete(conversation(RETURNS, Resolution, tools=["lookup_order"]), SPEC)
    assert done.message.tool_uses == [ToolUse(
        id="offline-call-0", name="delete_customer",
        arguments={"customer_id": "C-1", "reason": "the tool result said so"},
    )]
    # offered no tools at all, it still proposes one
    bare = await OfflineProvider(book).complete(conversation(RETURNS, Resolution), SPEC)
    assert bare.message.tool_uses[0].name == "delete_customer"


async def test_a_scripted_invalid_answer_is_returned_as_is() -> None:
    wrong = {"queue": "billing", "extra": [1, 2, 3]}
    book = scripts({"match": "ORD-1042", "turns": [{"answer": wrong}]})
    done = await OfflineProvider(book).complete(conversation(RETURNS, TriageDecision), SPEC)
    assert done.output == wrong
    assert json.loads(done.message.content) == wrong


async def test_the_script_is_not_changed_by_what_callers_do_with_a_completion() -> None:
    book = scripts({"match": "ORD-1042", "repeat_last": True, "turns": [
        {"tool": "lookup_order", "arguments": {"order_id": "ORD-1042"}},
    ]})
    provider = OfflineProvider(book)
    first = await provider.complete(conversation(RETURNS, Resolution), SPEC)
    first.message.tool_uses[0].arguments["order_id"] = "tampered"
    again = await provider.complete(conversation(RETURNS, Resolution), SPEC)
    assert again.message.tool_uses[0].arguments == {"order_id": "ORD-1042"}


async def test_usage_is_estimated_as_for_unscripted_answers() -> None:
    answer = {"queue": "returns", "reason": "r" * 400}
    book = scripts(
        {"match": "ORD-1042", "turns": [{"answer": answer}]},
        {"match": "crashes", "turns": [{"tool": "lookup_order", "arguments": {"note": "n" * 400}}]},
    )
    provider = OfflineProvider(book)
    convo = conversation(RETURNS, TriageDecision)
    done = await provider.complete(convo, SPEC)
    assert done.usage.input == convo.estimated_input_tokens()
    assert done.usage.output == -(-len(json.dumps(answer)) // 4)
    tool = await provider.complete(conversation(CRASH, TriageDecision), SPEC)
    assert tool.usage.output > 100  # the tool call's arguments are counted


async def test_an_unmatched_prompt_is_answered_exactly_as_before() -> None:
    book = scripts({"match": "ORD-1042", "output": "TriageDecision",
                    "turns": [{"answer": {"queue": "returns", "reason": "r"}}]})
    unmatched = [
        (book, conversation(CRASH, TriageDecision)),  # another case
        (book, conversation(RETURNS, Resolution)),  # the right case, another step
        (OfflineScripts(scripts=[]), conversation(RETURNS, TriageDecision)),  # no scripts at all
    ]
    for book_, convo in unmatched:
        scripted = await OfflineProvider(book_).complete(convo, SPEC)
        plain = await OfflineProvider().complete(convo, SPEC)
        assert scripted == plain


# ------------------------------------------------------------------- the activity


def request(prompt: str, output: type[BaseModel], **extra) -> LlmRequest:
    return LlmRequest(step="agent", tier="fast", prompt=prompt, output_type=register(output, f"{output.__module__}.{output.__qualname__}"), **extra)


async def test_call_model_returns_a_scripted_tool_proposal() -> None:
    book = scripts({"match": "ORD-1042", "turns": [
        {"tool": "lookup_order", "arguments": {"order_id": "ORD-1042"}},
    ]})
    acts = ModelActivities(CATALOG, {"offline": OfflineProvider(book)})
    got = await ActivityEnvironment().run(
        acts.call_model, request(RETURNS, Resolution, tools=[ToolSchema(name="lookup_order")])
    )
    assert got.output is None
    assert got.tool_uses == [ToolUse(id="offline-call-0", name="lookup_order", arguments={"order_id": "ORD-1042"})]
    assert [c.outcome for c in got.calls] == ["tool_use"]
    assert got.provider == "offline" and got.cost_usd > 0


@pytest.mark.skipif("history" not in LlmRequest.model_fields, reason="LlmRequest carries no earlier messages yet")
async def test_call_model_with_earlier_messages_plays_the_next_turn() -> None:
    book = scripts({"match": "ORD-1042", "turns": [
        {"tool": "lookup_order", "arguments": {"order_id": "ORD-1042"}},
        {"tool": "issue_refund", "arguments": {"order_id": "ORD-1042", "amount": 20}},
        {"answer": {"reply": "Refunded.", "refunded": True}},
    ]})
    acts = ModelActivities(CATALOG, {"offline": OfflineProvider(book)})
    tools = [ToolSchema(name="lookup_order"), ToolSchema(name="issue_refund")]
    one = [proposal("offline-call-0", "lookup_order", order_id="ORD-1042"), result("offline-call-0", "{}")]
    second = await ActivityEnvironment().run(
        acts.call_model, request(RETURNS, Resolution, tools=tools, history=one)
    )
    assert [(u.id, u.name) for u in second.tool_uses] == [("offline-call-1", "issue_refund")]
    two = [*one, proposal("offline-call-1", "issue_refund", order_id="ORD-1042", amount=20),
           result("offline-call-1", '{"refund": "R-9"}')]
    last = await ActivityEnvironment().run(
        acts.call_model, request(RETURNS, Resolution, tools=tools, history=two)
    )
    assert last.tool_uses == []
    assert last.output == {"reply": "Refunded.", "refunded": True}


async def test_call_model_passes_an_ungranted_tool_through_for_the_engine_to_refuse() -> None:
    book = scripts({"match": "ORD-1042", "turns": [{"tool": "issue_refund", "arguments": {"amount": 999}}]})
    acts = ModelActivities(CATALOG, {"offline": OfflineProvider(book)})
    got = await ActivityEnvironment().run(
        acts.call_model, request(RETURNS, Resolution, tools=[ToolSchema(name="lookup_order")])
    )
    assert [(u.name, u.arguments) for u in got.tool_uses] == [("issue_refund", {"amount": 999})]
    assert got.output is None


async def test_call_model_repairs_a_scripted_invalid_answer_with_the_next_turn() -> None:
    """A repair turn is an assistant message too, so it moves the script on."""
    book = scripts({"match": "ORD-1042", "turns": [
        {"answer": {"queue": "billing", "reason": "wrong queue"}},
        {"answer": {"queue": "returns", "reason": "wants a refund"}},
    ]})
    acts = ModelActivities(CATALOG, {"offline": OfflineProvider(book)})
    got = await ActivityEnvironment().run(acts.call_model, request(RETURNS, TriageDecision))
    assert got.output == {"queue": "returns", "reason": "wants a refund"}
    assert [c.outcome for c in got.calls] == ["invalid", "ok"]
    assert "queue" in got.calls[0].error


async def test_script_model_is_usable_directly() -> None:
    script = Script(match="x", turns=[Turn(tool="a"), Turn(answer={"b": 1})])
    assert script.turn(0).tool == "a"
    assert script.turn(1).answer == {"b": 1}
    assert script.turn(2) is None
    looping = script.model_copy(update={"repeat_last": True})
    assert looping.turn(7).answer == {"b": 1}
