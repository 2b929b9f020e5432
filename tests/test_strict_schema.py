"""`strict_schema` turns a pydantic JSON schema into what OpenAI's strict mode accepts.

Proves: every object (root, nested, inlined, in `$defs`) is closed and lists all
of its properties as required; fields literally named like schema keywords
(`title`, `format`, `default`) survive as properties; a `$ref` with siblings is
inlined (the sibling description kept), a bare `$ref` is left alone; dropped
constraints reappear in the description; optional fields stay nullable; the
input schema is never mutated.
"""

from __future__ import annotations

import copy
from typing import Optional

from pydantic import BaseModel, Field

from activities.llm.strict_schema import strict_schema


class Address(BaseModel):
    street: str
    city: str = Field(min_length=2, max_length=40, description="City name")


class Person(BaseModel):
    name: str = Field(pattern=r"^[A-Z]")
    home: Address = Field(description="where they live now")
    past: list[Address] = Field(default_factory=list, max_length=3)
    work: Optional[Address] = None
    nickname: str | None = None
    age: int = Field(default=30, ge=18, le=120)


class KeywordNames(BaseModel):
    title: str
    format: str = "pdf"
    default: int = Field(default=3, ge=1, le=9)


def objects(node: object, path: str = "#") -> list[tuple[str, dict]]:
    """Every object schema in the tree (anything with `type: object` or `properties`)."""
    found: list[tuple[str, dict]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            found.append((path, node))
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for name, sub in value.items():
                    found += objects(sub, f"{path}/{key}/{name}")
            else:
                found += objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += objects(item, f"{path}/{i}")
    return found


def keys_anywhere(node: object) -> set[str]:
    """Schema keywords used anywhere, not counting property names."""
    keys: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    keys |= keys_anywhere(sub)
            else:
                keys |= keys_anywhere(value)
    elif isinstance(node, list):
        for item in node:
            keys |= keys_anywhere(item)
    return keys


def test_every_object_is_closed_and_requires_all_its_properties() -> None:
    strict = strict_schema(Person.model_json_schema())
    found = objects(strict)
    # root, home (inlined), $defs/Address at least
    paths = {p for p, _ in found}
    assert {"#", "#/properties/home", "#/$defs/Address"} <= paths
    for path, node in found:
        assert node["additionalProperties"] is False, path
        assert sorted(node["required"]) == sorted(node["properties"]), path
    assert strict["required"] == ["name", "home", "past", "work", "nickname", "age"]


def test_optional_fields_become_required_but_stay_nullable() -> None:
    strict = strict_schema(Person.model_json_schema())
    for name in ("work", "nickname"):
        field = strict["properties"][name]
        assert name in strict["required"]
        assert {"type": "null"} in field["anyOf"], name
        assert "default" not in field
    assert strict["properties"]["nickname"]["anyOf"][0] == {"type": "string"}


def test_unsupported_keywords_are_gone_everywhere() -> None:
    strict = strict_schema(Person.model_json_schema())
    used = keys_anywhere(strict)
    for keyword in ("title", "default", "pattern", "minLength", "maxLength", "minimum", "maximum", "maxItems"):
        assert keyword not in used, keyword


def test_fields_named_like_keywords_survive_as_properties() -> None:
    original = KeywordNames.model_json_schema()
    strict = strict_schema(original)
    assert list(strict["properties"]) == ["title", "format", "default"]
    assert strict["required"] == ["title", "format", "default"]
    assert strict["properties"]["title"] == {"type": "string"}
    assert strict["properties"]["format"] == {"type": "string"}
    assert strict["properties"]["default"]["type"] == "integer"
    # the keywords themselves are still dropped at the schema level
    assert "title" not in strict
    assert "default" not in strict["properties"]["format"]
    assert "title" not in strict["properties"]["default"]


def test_ref_with_sibling_description_is_inlined_and_made_strict() -> None:
    original = Person.model_json_schema()
    assert set(original["properties"]["home"]) == {"$ref", "description"}  # pydantic's shape
    home = strict_schema(original)["properties"]["home"]
    assert "$ref" not in home
    assert home["description"] == "where they live now"
    assert home["type"] == "object"
    assert set(home["properties"]) == {"street", "city"}
    assert home["required"] == ["street", "city"]
    assert home["additionalProperties"] is False
    assert "title" not in home


def test_bare_ref_is_kept_and_its_definition_made_strict() -> None:
    strict = strict_schema(Person.model_json_schema())
    assert strict["properties"]["past"]["items"] == {"$ref": "#/$defs/Address"}
    assert {"$ref": "#/$defs/Address"} in strict["properties"]["work"]["anyOf"]
    address = strict["$defs"]["Address"]
    assert address["additionalProperties"] is False
    assert address["required"] == ["street", "city"]
    assert "title" not in address


def test_dropped_constraints_move_into_the_description() -> None:
    strict = strict_schema(Person.model_json_schema())
    city = strict["$defs"]["Address"]["properties"]["city"]
    assert city["description"].startswith("City name")
    assert "minLength=2" in city["description"] and "maxLength=40" in city["description"]
    assert "pattern=^[A-Z]" in strict["properties"]["name"]["description"]
    age = strict["properties"]["age"]["description"]
    assert "minimum=18" in age and "maximum=120" in age
    assert "maxItems=3" in strict["properties"]["past"]["description"]
    # a field with no constraints gets no description made up for it
    assert "description" not in strict["properties"]["nickname"]


def test_input_schema_is_not_mutated() -> None:
    for model in (Person, KeywordNames):
        original = model.model_json_schema()
        before = copy.deepcopy(original)
        strict_schema(original)
        strict_schema(original)
        assert original == before, model.__name__


class Node(BaseModel):
    name: str
    children: list[Node] = Field(default_factory=list, description="sub-nodes")


def test_recursive_model_root_ref_is_inlined_into_an_object() -> None:
    original = Node.model_json_schema()
    assert set(original) == {"$ref", "$defs"}  # pydantic puts a recursive root behind a $ref
    strict = strict_schema(original)
    assert "$ref" not in strict
    assert strict["type"] == "object"  # strict mode wants an object at the root
    assert strict["additionalProperties"] is False
    assert strict["required"] == ["name", "children"]
    assert strict["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert strict["$defs"]["Node"]["additionalProperties"] is False
