"""Strict JSON values: every JSON type round-trips; NaN, Infinity, huge ints and excess are refused."""

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_config.errors import ValidationError
from llm_config.values import MAX_DEPTH, MAX_VALUE_BYTES, loads_strict, parse_cli_value, validate_value

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_round_trip(value: object) -> None:
    text = validate_value(value)
    assert loads_strict(text) == value


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1, {1: "a"}, b"x", {1.5}])
def test_refused_values(bad: object) -> None:
    with pytest.raises(ValidationError):
        validate_value(bad)


@pytest.mark.parametrize("innermost", [1, [], {}, "s"], ids=["scalar", "empty-array", "empty-object", "string"])
def test_depth_limit_is_one_rule_whatever_the_innermost_value(innermost: object) -> None:
    """32 nested arrays/objects are allowed and 33 are not, for `[[…[1]…]]` and `[[…[]…]]` alike."""
    def nested(levels: int) -> object:
        value: object = innermost
        for _ in range(levels - (1 if isinstance(innermost, list | dict) else 0)):
            value = [value]
        return value

    validate_value(nested(MAX_DEPTH))
    assert loads_strict(orjson.dumps(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    with pytest.raises(ValidationError, match="more than 32 nested"):
        validate_value(nested(MAX_DEPTH + 1))
    with pytest.raises(ValidationError, match="more than 32 nested"):
        loads_strict(orjson.dumps(nested(MAX_DEPTH + 1)))


def test_duplicate_object_keys_are_refused_not_last_wins() -> None:
    for text in ('{"secret": true, "secret": false}', '[{"a": 1}, {"b": 1, "b": 2}]',
                 '{"sk-live-4f2a": 1, "sk-live-4f2a": 2}'):
        for parse in (loads_strict, parse_cli_value):
            with pytest.raises(ValidationError, match="same key twice") as refused:
                parse(text)
            assert "sk-live" not in str(refused.value)  # the key may be part of a secret: never echoed


def test_size_limit() -> None:
    validate_value("x" * (MAX_VALUE_BYTES - 2))
    with pytest.raises(ValidationError, match="larger than"):
        validate_value("x" * MAX_VALUE_BYTES)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[NaN]", '{"a": Infinity}', "1e999x"])
def test_loads_strict_refuses_constants_and_garbage(text: str) -> None:
    with pytest.raises(ValidationError):
        loads_strict(text)


def test_loads_strict_refuses_huge_int_and_deep_nesting() -> None:
    with pytest.raises(ValidationError):
        loads_strict(str(2**64))
    with pytest.raises(ValidationError):
        loads_strict("[" * 10000 + "]" * 10000)


@pytest.mark.parametrize(
    ("text", "value"),
    [("-1", -1), ("0.5", 0.5), ("true", True), ("null", None), ('{"a": [1]}', {"a": [1]}), ("gpt-4o", "gpt-4o"),
     ('"quoted"', "quoted"), ("", ""), ("it's; <script>&", "it's; <script>&")],
)
def test_cli_values(text: str, value: object) -> None:
    assert parse_cli_value(text) == value
    assert type(parse_cli_value(text)) is type(value)


def test_cli_value_nan_is_refused_not_stored_as_string() -> None:
    with pytest.raises(ValidationError, match="NaN"):
        parse_cli_value("NaN")
