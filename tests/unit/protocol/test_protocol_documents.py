"""Session documents: built-ins, parsing, parameter validation, substitution, preferences, CLI input."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol import documents
from openssm.protocol.documents import DocumentError

BUILTIN_NAMES = [
    "SSM-SessionManagerRunShell",
    "AWS-StartPortForwardingSession",
    "AWS-StartPortForwardingSessionToRemoteHost",
    "AWS-StartSSHSession",
    "AWS-StartInteractiveCommand",
    "AWS-StartNonInteractiveCommand",
]
names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=12
)


def builtin(name: str) -> dict[str, Any]:
    return documents.builtin_documents()[name]


# -- built-ins ---------------------------------------------------------------------------------------


def test_all_builtin_documents_exist_and_validate() -> None:
    docs = documents.builtin_documents()
    assert sorted(docs) == sorted(BUILTIN_NAMES)
    for doc in docs.values():
        assert documents.validate_document(doc) == doc


def test_builtin_documents_are_fresh_copies() -> None:
    builtin("AWS-StartSSHSession")["parameters"]["portNumber"]["default"] = "2222"
    assert builtin("AWS-StartSSHSession")["parameters"]["portNumber"]["default"] == "22"


@pytest.mark.parametrize(
    ("name", "session_type", "defaults"),
    [
        ("SSM-SessionManagerRunShell", "Standard_Stream", {}),
        ("AWS-StartPortForwardingSession", "Port", {"portNumber": ["80"], "localPortNumber": ["0"]}),
        ("AWS-StartSSHSession", "Port", {"portNumber": ["22"]}),
    ],
)
def test_builtin_defaults(name: str, session_type: str, defaults: dict[str, list[str]]) -> None:
    doc = builtin(name)
    assert doc["sessionType"] == session_type
    assert documents.validate_parameters(doc, {}) == defaults


def test_port_forwarding_resolves_like_the_agent_expects() -> None:
    doc = builtin("AWS-StartPortForwardingSession")
    validated = documents.validate_parameters(doc, {"portNumber": ["3389"], "localPortNumber": ["13389"]})
    resolved = documents.resolve(doc, documents.agent_parameters(validated))
    assert resolved["properties"] == {
        "portNumber": "3389",
        "type": "LocalPortForwarding",
        "localPortNumber": "13389",
    }
    assert doc["properties"]["portNumber"] == "{{ portNumber }}"  # input untouched


def test_remote_host_needs_a_host() -> None:
    doc = builtin("AWS-StartPortForwardingSessionToRemoteHost")
    with pytest.raises(DocumentError) as info:
        documents.validate_parameters(doc, {})
    assert info.value.field == "host"
    resolved = documents.resolve(doc, {"host": "db.internal", "portNumber": "5432"})
    assert resolved["properties"]["host"] == "db.internal"
    assert resolved["properties"]["localPortNumber"] == "0"  # default


def test_interactive_command_requires_command_and_substitutes_every_platform() -> None:
    doc = builtin("AWS-StartInteractiveCommand")
    with pytest.raises(DocumentError, match="command: is required"):
        documents.validate_parameters(doc, {})
    resolved = documents.resolve(doc, {"command": "top -b"})
    assert {p["commands"] for p in resolved["properties"].values()} == {"top -b"}


# -- patterns ------------------------------------------------------------------------------------------


@given(st.integers(1, 65535))
def test_port_pattern_accepts_every_port(port: int) -> None:
    assert re.search(documents.PORT_PATTERN, str(port))
    assert re.search(documents.LOCAL_PORT_PATTERN, str(port))


@pytest.mark.parametrize("bad", ["0", "65536", "99999", "080", "-1", "22 ", "", "1e3", "22;id"])
def test_port_pattern_rejects(bad: str) -> None:
    assert not re.search(documents.PORT_PATTERN, bad)


def test_local_port_allows_zero_only_there() -> None:
    assert re.search(documents.LOCAL_PORT_PATTERN, "0")
    doc = builtin("AWS-StartPortForwardingSession")
    with pytest.raises(DocumentError) as info:
        documents.validate_parameters(doc, {"portNumber": ["0"]})
    assert info.value.field == "portNumber"


@pytest.mark.parametrize(
    "host",
    ["localhost", "db.internal", "a-b.example.com.", "10.0.0.12", "fe80::1", "2001:db8::8a2e:370:7334"],
)
def test_host_pattern_accepts(host: str) -> None:
    assert re.search(documents.HOST_PATTERN, host)


@pytest.mark.parametrize(
    "host", ["", "a b", "x;id", "'quoted'", "-leading.com", "a" * 64 + ".com", "$(id)", "a..b"]
)
def test_host_pattern_rejects(host: str) -> None:
    assert not re.search(documents.HOST_PATTERN, host)


def _pattern_document(pattern: str) -> str:
    parameters = {"p": {"type": "String", "allowedPattern": pattern}}
    return json.dumps({"schemaVersion": "1.0", "sessionType": "Port", "parameters": parameters})


@pytest.mark.parametrize(
    ("pattern", "value", "accepted"),
    [
        (r"^(?!\s).*", "name", True),  # a lookahead, as AWS's own runbooks write them
        (r"^(?!\s).*", " name", False),
        (r"^(?!0{64}$)[a-f0-9]{64}$", "0" * 64, False),
        (r"^(\w)\1$", "aa", True),  # a backreference
        (r"^a{1000}$", "a" * 1000, True),  # a large count alone is fine
    ],
)
def test_allowed_patterns_keep_regular_expression_features(pattern: str, value: str, accepted: bool) -> None:
    document = documents.parse_document(_pattern_document(pattern))
    if accepted:
        assert documents.validate_parameters(document, {"p": [value]}) == {"p": [value]}
    else:
        with pytest.raises(DocumentError, match="does not match the allowed pattern"):
            documents.validate_parameters(document, {"p": [value]})


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("^a{99999999999999999999}$", "invalid regular expression"),  # past C's long: OverflowError in re
        ("[a-z]{4294967294}", "too large"),  # compiling would write out four billion items
        ("(?:(?:a{1000}){1000}){1000}", "too large"),  # each count small, their product not
        ("(?:a{150}){150}", "too large"),
        ("(" * 2000 + ")" * 2000, "invalid regular expression"),  # nested past the parser's recursion
        ("a" * 5000, "longer than"),
    ],
)
def test_allowed_patterns_too_costly_to_compile_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as info:
        documents.parse_document(_pattern_document(pattern))
    assert info.value.field == "parameters.p.allowedPattern"


def test_an_allowed_pattern_that_backtracks_catastrophically_is_stopped() -> None:
    """``(a|aa)+`` on 60 a's has ~10^12 ways to fail: the time limit ends the match, not the loop."""
    document = documents.parse_document(_pattern_document("^(a|aa)+$"))
    with pytest.raises(DocumentError, match="took too long") as info:
        documents.validate_parameters(document, {"p": ["a" * 60 + "!"]})
    assert info.value.field == "p"


# -- validate_parameters ---------------------------------------------------------------------------------


def _custom_document() -> dict[str, Any]:
    return {
        "schemaVersion": "1.0",
        "sessionType": "InteractiveCommands",
        "parameters": {
            "count": {"type": "Integer", "default": 3},
            "verbose": {"type": "Boolean", "default": False},
            "tags": {"type": "StringList", "default": ["a", "b"], "maxItems": 3},
            "mode": {"type": "String", "allowedValues": ["fast", "slow"], "default": "fast"},
            "label": {"type": "String", "default": "", "maxChars": 5},
        },
        "properties": {"linux": {"commands": "run {{ mode }} -n {{count}} {{ label }}"}},
    }


def test_defaults_of_every_type_are_filled_as_strings() -> None:
    assert documents.validate_parameters(_custom_document(), {}) == {
        "count": ["3"],
        "verbose": ["false"],
        "tags": ["a", "b"],
        "mode": ["fast"],
        "label": [""],
    }


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"unknown": ["1"]}, "unknown", "not a parameter"),
        ({"count": ["x"]}, "count", "not an integer"),
        ({"count": ["1", "2"]}, "count", "exactly one value"),
        ({"count": "1"}, "count", "list of strings"),
        ({"verbose": ["yes"]}, "verbose", "true or false"),
        ({"tags": ["1", "2", "3", "4"]}, "tags", "at most 3"),
        ({"mode": ["medium"]}, "mode", "allowed values"),
        ({"label": ["toolong"]}, "label", "longer than 5"),
        ({"label": ["x" * 10_000]}, "label", "longer than"),
    ],
)
def test_invalid_parameters_name_the_parameter(params: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as info:
        documents.validate_parameters(_custom_document(), params)
    assert info.value.field == field


# -- resolve ---------------------------------------------------------------------------------------------

values = st.text(max_size=30)


def _doc_with(properties: dict[str, Any], defaults: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "schemaVersion": "1.0",
        "sessionType": "Port",
        "parameters": {name: {"type": "String", "default": v} for name, v in (defaults or {}).items()},
        "inputs": {"shellProfile": {"linux": "cd {{ dir }}"}},
        "properties": properties,
    }


@given(names, values, st.sampled_from(["{{ %s }}", "{{%s}}", "{{   %s  }}"]))
def test_exact_placeholder_becomes_the_value_as_is(name: str, value: str, form: str) -> None:
    doc = _doc_with({"x": form % name, "nested": [{"y": form % name}]})
    resolved = documents.resolve(doc, {name: value})
    assert resolved["properties"] == {"x": value, "nested": [{"y": value}]}


@given(names, values, values, values)
def test_embedded_placeholders_are_replaced_textually_once(
    name: str, value: str, before: str, after: str
) -> None:
    doc = _doc_with({"x": before.replace("{", "") + "{{ " + name + " }}" + after.replace("{", "")})
    resolved = documents.resolve(doc, {name: value})
    assert resolved["properties"]["x"] == before.replace("{", "") + value + after.replace("{", "")


def test_values_that_look_like_placeholders_are_not_expanded_again() -> None:
    doc = _doc_with({"x": "a {{ one }} b", "y": "{{ one }}"})
    resolved = documents.resolve(doc, {"one": "{{ two }}", "two": "secret"})
    assert resolved["properties"] == {"x": "a {{ two }} b", "y": "{{ two }}"}


def test_unknown_and_ssm_references_are_left_alone() -> None:
    doc = _doc_with(
        {
            "a": "{{ssm:/db/password}}",
            "b": "{{ ssm-secure:key }}",
            "c": "{{ missing }}",
            "d": "x{{ missing }}",
        }
    )
    resolved = documents.resolve(doc, {})
    assert resolved["properties"] == doc["properties"]


def test_defaults_fill_in_and_inputs_are_resolved_too() -> None:
    doc = _doc_with({"p": "{{ port }}"}, defaults={"port": "22", "dir": "/srv"})
    resolved = documents.resolve(doc, {})
    assert resolved["properties"] == {"p": "22"}
    assert resolved["inputs"]["shellProfile"]["linux"] == "cd /srv"
    assert documents.placeholders(doc) == {"port", "dir"}


def test_non_string_defaults_keep_their_type_for_whole_placeholders() -> None:
    doc = _custom_document()
    doc["properties"]["linux"]["flag"] = "{{ verbose }}"
    resolved = documents.resolve(doc, {"count": "7"})
    assert resolved["properties"]["linux"]["flag"] is False
    assert resolved["properties"]["linux"]["commands"] == "run fast -n 7 "


# -- parse_document --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtins_round_trip_through_json_and_yaml(name: str) -> None:
    doc = builtin(name)
    assert documents.parse_document(json.dumps(doc), "JSON") == doc
    assert documents.parse_document(yaml.safe_dump(doc), "yaml") == doc


def test_yaml_unquoted_schema_version_is_normalised() -> None:
    text = "schemaVersion: 1.0\nsessionType: Standard_Stream\ninputs:\n  idleSessionTimeout: 5\n"
    assert documents.parse_document(text, "YAML")["schemaVersion"] == "1.0"


@pytest.mark.parametrize(
    ("text", "fmt", "field"),
    [
        ("{", "JSON", "content"),
        ("[]", "JSON", "content"),
        ('{"schemaVersion":"2.2","sessionType":"Port"}', "JSON", "schemaVersion"),
        ('{"schemaVersion":"1.0","sessionType":"Shell"}', "JSON", "sessionType"),
        ('{"schemaVersion":"1.0","sessionType":"Port","parameters":[]}', "JSON", "parameters"),
        (
            '{"schemaVersion":"1.0","sessionType":"Port","parameters":{"p":{"type":"Str"}}}',
            "JSON",
            "parameters.p.type",
        ),
        (
            '{"schemaVersion":"1.0","sessionType":"Port","parameters":{"p":{"type":"String","allowedPattern":"("}}}',
            "JSON",
            "parameters.p.allowedPattern",
        ),
        (
            '{"schemaVersion":"1.0","sessionType":"Port","parameters":{"a b":{"type":"String"}}}',
            "JSON",
            "parameters.a b",
        ),
        ('{"schemaVersion":"1.0","sessionType":"Port","properties":"x"}', "JSON", "properties"),
        ("schemaVersion: '1.0'\nsessionType: Port\nwhen: 2020-01-01\n", "YAML", "content.when"),
        ("a: &x [1]\nb: *x\n", "YAML", "content"),
        ("{}", "TEXT", "DocumentFormat"),
        ("x" * (documents.MAX_DOCUMENT_BYTES + 1), "JSON", "content"),
    ],
)
def test_parse_document_errors_name_the_field(text: str, fmt: str, field: str) -> None:
    with pytest.raises(DocumentError) as info:
        documents.parse_document(text, fmt)
    assert info.value.field == field


# -- preferences -----------------------------------------------------------------------------------------


def test_preferences_defaults_from_the_runshell_document() -> None:
    prefs = documents.preferences_from_document(builtin("SSM-SessionManagerRunShell"))
    assert prefs == documents.Preferences()
    assert prefs.idle_session_timeout == 20 and prefs.max_session_duration is None


def test_preferences_accept_strings_numbers_and_string_booleans() -> None:
    doc = {
        "inputs": {
            "idleSessionTimeout": "5",
            "maxSessionDuration": 1440,
            "runAsEnabled": "TRUE",
            "runAsDefaultUser": "ops",
            "s3EncryptionEnabled": "false",
            "cloudWatchStreamingEnabled": True,
            "cloudWatchLogGroupName": "sessions",
            "shellProfile": {"linux": "exec bash", "windows": ""},
        }
    }
    prefs = documents.preferences_from_document(doc)
    assert (prefs.idle_session_timeout, prefs.max_session_duration) == (5, 1440)
    assert prefs.run_as_enabled and prefs.cloudwatch_streaming_enabled and not prefs.s3_encryption_enabled
    assert (prefs.run_as_default_user, prefs.shell_profile_linux) == ("ops", "exec bash")
    assert prefs.cloudwatch_log_group_name == "sessions"


@given(st.integers(-5, 100))
def test_idle_timeout_range(minutes: int) -> None:
    doc = {"inputs": {"idleSessionTimeout": str(minutes)}}
    if 1 <= minutes <= 60:
        assert documents.preferences_from_document(doc).idle_session_timeout == minutes
    else:
        with pytest.raises(DocumentError) as info:
            documents.preferences_from_document(doc)
        assert info.value.field == "inputs.idleSessionTimeout"


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"maxSessionDuration": "1441"}, "inputs.maxSessionDuration"),
        ({"maxSessionDuration": "0"}, "inputs.maxSessionDuration"),
        ({"idleSessionTimeout": True}, "inputs.idleSessionTimeout"),
        ({"idleSessionTimeout": "twenty"}, "inputs.idleSessionTimeout"),
        ({"runAsEnabled": "yes"}, "inputs.runAsEnabled"),
        ({"runAsDefaultUser": 5}, "inputs.runAsDefaultUser"),
        ({"shellProfile": "bash"}, "inputs.shellProfile"),
        ({"shellProfile": {"linux": 1}}, "inputs.shellProfile.linux"),
    ],
)
def test_bad_preferences_name_the_field(inputs: dict[str, Any], field: str) -> None:
    with pytest.raises(DocumentError) as info:
        documents.preferences_from_document({"inputs": inputs})
    assert info.value.field == field


# -- parse_cli_parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("portNumber=3389, localPortNumber=13389", {"portNumber": ["3389"], "localPortNumber": ["13389"]}),
        ("portNumber=22", {"portNumber": ["22"]}),
        ('{"portNumber":["22"]}', {"portNumber": ["22"]}),
        ('{"portNumber":"22"}', {"portNumber": ["22"]}),
        ("tags=a,b,c,mode=fast", {"tags": ["a", "b", "c"], "mode": ["fast"]}),
        ("tags=[a, b],mode=[]", {"tags": ["a", "b"], "mode": []}),
        ('command="echo a, b=c",x=1', {"command": ["echo a, b=c"], "x": ["1"]}),
        ("command='it\\'s'", {"command": ["it's"]}),
        ("command=ls -la /tmp", {"command": ["ls -la /tmp"]}),
        ("", {}),
    ],
)
def test_cli_parameters(text: str, expected: dict[str, list[str]]) -> None:
    assert documents.parse_cli_parameters(text) == expected


@pytest.mark.parametrize(
    "text", ["portNumber", "=3", "a=[1,2] x", "a=[1,2", "a='open", "[1]", '{"a":[1]}', "{bad"]
)
def test_cli_parameters_errors(text: str) -> None:
    with pytest.raises(DocumentError):
        documents.parse_cli_parameters(text)


simple_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./:", min_size=1, max_size=10)


@given(st.dictionaries(names, st.lists(simple_values, min_size=1, max_size=3), max_size=4))
def test_cli_shorthand_and_json_round_trip(params: dict[str, list[str]]) -> None:
    shorthand = ", ".join(f"{name}={','.join(items)}" for name, items in params.items())
    assert documents.parse_cli_parameters(shorthand) == params
    assert documents.parse_cli_parameters(json.dumps(params)) == params
