"""Names and environments: allowed forms pass unchanged, everything else is refused clearly."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_config.errors import ValidationError
from llm_config.models import Environment
from llm_config.names import parse_environment, validate_key, validate_namespace


@pytest.mark.parametrize("ns", ["acme", "acme/chatbot", "a/b/c/d/e/f/g/h", "A1_.-x", "x" * 64, "0"])
def test_valid_namespaces_pass_unchanged(ns: str) -> None:
    assert validate_namespace(ns) == ns


@pytest.mark.parametrize(
    "ns",
    ["", "/", "acme/", "/acme", "a//b", "..", "a/../b", ".", "-a", "_a", "a b", "a\x00b", "a/b/c/d/e/f/g/h/i",
     "x" * 65, "caf\u00e9", "a\ud800", "acme/-/x", "a%2fb", "a;b", None, 3],
)
def test_invalid_namespaces_are_refused(ns: object) -> None:
    with pytest.raises(ValidationError, match="Invalid namespace"):
        validate_namespace(ns)


@pytest.mark.parametrize("key", ["openai.api_key", "a", "A-b_c.d", "9", "k" * 200])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", ".hidden", "a/b", "k" * 201, "a b", "\u212a", "a\nb", "-1"])
def test_invalid_keys(key: str) -> None:
    with pytest.raises(ValidationError, match="Invalid key"):
        validate_key(key)


@pytest.mark.parametrize(
    ("text", "env"),
    [("prod", Environment.PRODUCTION), ("PRODUCTION", Environment.PRODUCTION), ("Dev", Environment.DEVELOPMENT),
     ("stage", Environment.STAGING), ("base", Environment.BASE), ("edge", Environment.EDGE),
     ("staging", Environment.STAGING)],
)
def test_environment_aliases(text: str, env: Environment) -> None:
    assert parse_environment(text) is env


@pytest.mark.parametrize("text", ["qa", "", "production2", "prd"])
def test_unknown_environment_message(text: str) -> None:
    with pytest.raises(ValidationError, match=f"^Unknown environment: {text}$"):
        parse_environment(text)


@given(st.text(max_size=80))
def test_validation_never_rewrites(text: str) -> None:
    for check in (validate_namespace, validate_key):
        try:
            assert check(text) == text
        except ValidationError as exc:
            assert "\x00" not in exc.message


def test_a_label_with_a_lone_surrogate_is_refused() -> None:
    """A Python caller can pass one (JSON from the wire cannot); it could never be stored as UTF-8."""
    from llm_config.errors import ValidationError
    from llm_config.names import validate_label

    with pytest.raises(ValidationError, match="Invalid tag"):
        validate_label("a\ud800b", "tag")
    assert validate_label("ok ✓ 🔑", "tag") == "ok ✓ 🔑"
