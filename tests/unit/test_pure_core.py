"""Pure core pieces: resolution, nesting, env-var names, import parsing, export formats, L1 cache."""

import time

import pytest
from dotenv import dotenv_values

from llm_config.cache.l1 import L1Cache
from llm_config.core.resolve import env_var_name, env_var_names, merge_with_base
from llm_config.core.transfer import format_export, parse_import
from llm_config.errors import ValidationError
from llm_config.models import Entry, Environment, Metadata, build_entry
from llm_config.nesting import nest
from llm_config.storage.migrate import SQLITE, load_migrations


def test_merge_prefers_own_value_then_base() -> None:
    assert merge_with_base({"a": 1, "b": 2}, {"b": 3, "c": 4}) == {"a": 1, "b": 3, "c": 4}


def test_nest_and_conflicts() -> None:
    assert nest({"openai.model": "gpt", "openai.temp": 0.5, "x": {"y": 1}}) == {
        "openai": {"model": "gpt", "temp": 0.5}, "x": {"y": 1}}
    with pytest.raises(ValidationError, match="both a key and a prefix"):
        nest({"a": 1, "a.b": 2})
    with pytest.raises(ValidationError):
        nest({"a": {"b": 1}, "a.b": 2})


def test_env_var_names() -> None:
    assert env_var_name("openai.api_key") == "OPENAI_API_KEY"
    assert env_var_name("x-y", "APP_") == "APP_X_Y"
    with pytest.raises(ValidationError, match="both map to A_B"):
        env_var_names(["a.b", "a_b"])


def test_parse_import_full_and_flat_documents() -> None:
    doc = parse_import('{"namespace": "n", "environment": "production", "values": {"a": 1}, "secrets": {"s": "x"}}')
    assert doc.values == {"a": 1} and doc.secrets == {"s": "x"}
    flat = parse_import("a: 1\nb: [1, 2]\n")
    assert flat.values == {"a": 1, "b": [1, 2]} and flat.secrets is None


@pytest.mark.parametrize(
    "text", ['{"values": {"ok": 1, "bad key": 2}}', '{"a": NaN}', "- 1\n- 2\n", '{"a": 1', "a: .nan\n",
             "b: !!binary aGk=\n", '{"values": {"a": 1}, "secrets": {"a": 2}}', '{"values": {}, "extra": 1}',
             "a: 1\na: 2\n", '{"a": 1, "a": 2}'],
)
def test_parse_import_rejects_whole_document(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_import(text)


def test_yaml_dates_stay_the_text_they_were_written_as() -> None:
    """JSON has no date type: a YAML date is imported as its string, not refused as a Python date."""
    assert parse_import("released: 2024-01-01\nat: 2024-01-01T10:00:00Z\n").values == {
        "released": "2024-01-01", "at": "2024-01-01T10:00:00Z",
    }


def test_a_value_of_the_wrong_type_names_its_key() -> None:
    with pytest.raises(ValidationError, match="payload: Invalid value: bytes is not a JSON type"):
        parse_import("ok: 1\npayload: !!binary aGk=\n")


def test_import_error_does_not_echo_values() -> None:
    with pytest.raises(ValidationError) as info:
        parse_import('{"bad key": "sk-very-secret"}')
    assert "sk-very-secret" not in str(info.value)


def test_dotenv_export_reads_back(tmp_path: object) -> None:
    doc = {"values": {"openai.model": "gpt-4o", "temp": 0.2, "prompt": 'say "hi"\nnow $HOME'},
           "secrets": {"openai.api_key": "sk-1"}}
    text = format_export(doc, "dotenv")
    import io

    parsed = dotenv_values(stream=io.StringIO(text))
    assert parsed == {"OPENAI_MODEL": "gpt-4o", "TEMP": "0.2", "PROMPT": 'say "hi"\nnow $HOME',
                      "OPENAI_API_KEY": "sk-1"}


def test_l1_ttl_bounds_and_generation_guard() -> None:
    cache: L1Cache[str] = L1Cache(ttl=0.05, max_entries=2, max_bytes=100)
    gen = cache.generation
    assert cache.put("a", "A", 10, gen) and cache.get("a") == "A"
    time.sleep(0.06)
    assert cache.get("a") is None
    cache.put("a", "A", 10, cache.generation)
    cache.put("b", "B", 10, cache.generation)
    cache.put("c", "C", 10, cache.generation)
    assert len(cache) == 2 and cache.get("a") is None and cache.stats.evictions == 1
    assert not cache.put("big", "X", 101, cache.generation)
    stale_gen = cache.generation
    cache.invalidate("b")
    assert not cache.put("b", "old", 10, stale_gen)
    assert cache.get("b") is None
    cache.put("d", "D", 90, cache.generation)
    assert cache.size_bytes <= 100


def test_the_migration_runner_knows_the_newest_sqlite_migration() -> None:
    # `SQLITE.latest` lets an up-to-date store skip reading the migration files on open
    newest = max(m.version for m in load_migrations(SQLITE.name))
    assert SQLITE.latest == newest


def test_build_entry_builds_the_same_frozen_entry_as_the_constructor() -> None:
    args = ("id1", "acme", "model", {"t": 0.2}, Environment.PRODUCTION, 3, False,
            "2026-01-01T00:00:00Z", "key:a#1", "2026-01-02T00:00:00Z", "key:b#2", ("x",), "note")
    built = build_entry(*args)
    metadata = Metadata(created_at=args[7], created_by=args[8], updated_at=args[9], updated_by=args[10],
                        tags=args[11], description=args[12])
    assert built == Entry(id="id1", namespace="acme", key="model", value={"t": 0.2},
                          environment=Environment.PRODUCTION, version=3, secret=False, metadata=metadata)
    assert repr(built) == repr(Entry(*args[:7], metadata))
    with pytest.raises(AttributeError):
        built.version = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        built.metadata.tags = ()  # type: ignore[misc]


def test_a_duplicate_key_is_refused_without_echoing_it() -> None:
    """A repeated key inside a value may be part of a secret: the error says where, never what."""
    for text, fmt in (('{"values": {"k": {"sk-live-9": 1, "sk-live-9": 2}}}', "json"),
                      ("k:\n  sk-live-9: 1\n  sk-live-9: 2\n", "yaml")):
        with pytest.raises(ValidationError) as refused:
            parse_import(text, fmt)
        assert "sk-live" not in refused.value.message
        assert "same key twice" in refused.value.message or "duplicate key" in refused.value.message
