"""prompt templates as a user drives them — the console script on a real
SQLite store, the library on a temporary store, and a real server (tests/e2e/conftest.py)."""

from __future__ import annotations

import httpx
import pytest

from llm_config.core.manager import ConfigManager
from llm_config.errors import ValidationError
from tests.e2e.conftest import LiveServer, api, live_server, make_live_server
from tests.e2e.test_cli import Runner, cli, cli_env, ok

__all__ = ["api", "cli", "cli_env", "live_server", "make_live_server"]  # the real fixtures, shared here


def test_render_output_tells_a_text_with_a_trailing_newline_from_one_without(cli: Runner) -> None:
    """`template render` prints the rendered text so that "abc" and "abc\\n" print different bytes (SPEC §6)."""
    ok(cli("template", "set", "app", "bare", "Answer in {{ lang }}.", "-e", "base"))
    ok(cli("template", "set", "app", "eol", "Answer in {{ lang }}.\n", "-e", "base"))
    bare = ok(cli("template", "render", "app", "bare", "-e", "base", "--var", "lang=English")).out
    eol = ok(cli("template", "render", "app", "eol", "-e", "base", "--var", "lang=English")).out
    assert bare != eol, f"two different rendered texts print identically: {bare!r}"


def test_var_on_the_command_line_is_inserted_as_typed(cli: Runner) -> None:
    """`--var VAR=VALUE` inserts VALUE as typed: `version=1.10` renders `1.10`, `scale=1e3` renders `1e3`."""
    ok(cli("template", "set", "app", "v", "version {{ version }} at {{ scale }}", "-e", "base"))
    out = ok(cli("template", "render", "app", "v", "-e", "base", "--var", "version=1.10",
                 "--var", "scale=1e3")).out
    assert out.strip() == "version 1.10 at 1e3", out


def test_var_that_is_a_long_number_is_accepted(cli: Runner) -> None:
    """A 20-digit `--var` (an order id) renders as typed: the 64-bit rule is for stored values (SPEC §3),
    not for text put into a prompt."""
    ok(cli("template", "set", "app", "order", "Order {{ id }}", "-e", "base"))
    result = cli("template", "render", "app", "order", "-e", "base", "--var", "id=12345678901234567890")
    assert result.code == 0, result.err
    assert result.out.strip() == "Order 12345678901234567890"


def test_a_default_is_for_the_templates_own_variables_not_an_includes(manager: ConfigManager) -> None:
    """A default names a variable of the template that declares it (a typo'd name is caught when it is set);
    a shared include gives defaults to its own variables."""
    manager.set_template("app", "footer", "-- {{ company }}", env="base")
    with pytest.raises(ValidationError, match="does not use: company"):
        manager.set_template("app", "mail", "Hi.\n{{ template:footer }}", env="base", defaults={"company": "Acme"})
    manager.set_template("app", "footer", "-- {{ company }}", env="base", defaults={"company": "Acme"})
    manager.set_template("app", "mail", "Hi.\n{{ template:footer }}", env="base")
    assert manager.render("app", "mail", env="base") == "Hi.\n-- Acme"


def test_no_such_route_hint_for_templates_names_the_templates_form(live_server: LiveServer,
                                                                   api: httpx.Client) -> None:
    """GET /api/v1/templates/app/system (no `-`) is 404 with a hint naming the templates route, without the
    configs-only "a one-segment namespace may omit it"."""
    api.put("/api/v1/templates/app/-/system", json={"content": "hi", "env": "base"}).raise_for_status()
    r = api.get("/api/v1/templates/app/system", params={"env": "base"})
    assert r.status_code == 404
    message = r.json()["message"]
    assert "/api/v1/templates/" in message and "may omit" not in message, message


def test_audit_names_a_template_and_a_schema_by_their_reserved_keys(manager: ConfigManager) -> None:
    """As the README says: a template is the key `~t:NAME` in the audit trail, a schema `~s:PATTERN`
    (no config key can start with `~`, so neither is ever mistaken for one)."""
    manager.set_template("app", "system", "hi {{ x }}", env="base")
    manager.set_schema("app", "openai.*", {"type": "object"})
    events = [(e.type, e.key) for e in manager.audit_events() if e.namespace == "app"]
    assert events == [("config_created", "~t:system"), ("schema_changed", "~s:openai.*")]


def test_if_match_on_a_template_write_is_not_silently_ignored(live_server: LiveServer, api: httpx.Client) -> None:
    """PUT and DELETE of a template, and PUT of a schema, honour `If-Match` (412 on mismatch, SPEC §3/§9)
    or refuse it (400); the stored text is left as it was."""
    t = "/api/v1/templates/app/-/system"
    api.put(t, json={"content": "v1", "env": "base"}).raise_for_status()
    r = api.put(t, json={"content": "v2", "env": "base"}, headers={"If-Match": '"7"'})
    assert r.status_code in (400, 412), r.text
    assert api.get(t, params={"env": "base"}).json()["content"] == "v1"
    r = api.delete(t, params={"env": "base"}, headers={"If-Match": '"7"'})
    assert r.status_code in (400, 412), r.status_code
    r = api.put("/api/v1/schemas/app/-/model", json={"schema": {"type": "string"}}, headers={"If-Match": '"7"'})
    assert r.status_code in (400, 412), r.text
