"""AWS shared credentials/config text: what we write, botocore reads; updates keep the rest."""

from __future__ import annotations

import pathlib

import botocore.session
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.auth.credentials_file import (
    Credentials,
    CredentialsFileError,
    parse_config,
    parse_credentials,
    render_config,
    render_credentials,
    set_config,
    set_credentials,
)

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
EXISTING_CREDENTIALS = """\
# managed by hand
[default]
aws_access_key_id = AKIAOLDOLDOLD
aws_secret_access_key = old/secret
aws_session_token = stale-token

[other]
aws_access_key_id=AKIAOTHER
aws_secret_access_key=other-secret
"""
EXISTING_CONFIG = """\
[default]
region = eu-west-1
cli_pager =

[profile openssm]
region = us-west-2
s3 =
    max_concurrent_requests = 4
output = table
"""


def test_render_credentials_and_config() -> None:
    assert render_credentials("openssm", "AKIDEXAMPLE", SECRET) == (
        f"[openssm]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = {SECRET}\n"
    )
    assert render_config("openssm", region="us-east-1", endpoint_url="http://127.0.0.1:8080") == (
        "[profile openssm]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:8080\n"
    )
    assert render_config("default", region="us-east-1").startswith("[default]\n")


def test_update_keeps_other_profiles_and_comments() -> None:
    updated = set_credentials(EXISTING_CREDENTIALS, "default", "AKIDEXAMPLE", SECRET)
    assert updated.startswith("# managed by hand\n[default]\naws_access_key_id = AKIDEXAMPLE\n")
    assert "stale-token" not in updated
    assert parse_credentials(updated) == {
        "default": Credentials("AKIDEXAMPLE", SECRET),
        "other": Credentials("AKIAOTHER", "other-secret"),
    }
    added = set_credentials(EXISTING_CREDENTIALS, "openssm", "AKIDEXAMPLE", SECRET, "token")
    assert added.startswith(EXISTING_CREDENTIALS)
    assert parse_credentials(added)["openssm"] == Credentials("AKIDEXAMPLE", SECRET, "token")


def test_config_update_replaces_nested_values_and_keeps_unknown_keys() -> None:
    updated = set_config(EXISTING_CONFIG, "openssm", region="us-east-1", extra={"s3": "off"})
    profiles = parse_config(updated)
    assert profiles["openssm"] == {"region": "us-east-1", "s3": "off", "output": "table"}
    assert "max_concurrent_requests" not in updated
    assert profiles["default"] == {"region": "eu-west-1", "cli_pager": ""}


@pytest.mark.parametrize("profile", ["", " x", "a]b", "a\nb"])
def test_invalid_profile_names(profile: str) -> None:
    with pytest.raises(CredentialsFileError):
        render_credentials(profile, "AKID", "secret")


def test_invalid_values_and_text() -> None:
    with pytest.raises(CredentialsFileError):
        render_credentials("p", "AKID", "secret\n[evil]")
    with pytest.raises(CredentialsFileError):
        parse_credentials("[a]\nx = 1\n[a]\ny = 2\n")


profiles = st.text(alphabet="abcxyz019-_.@", min_size=1, max_size=12)
values = st.text(alphabet="abcXYZ019+/=-_.:%;#", min_size=1, max_size=40)


@given(profiles, values, values, st.one_of(st.none(), values))
def test_round_trip(profile: str, key_id: str, secret: str, token: str | None) -> None:
    text = set_credentials(EXISTING_CREDENTIALS, profile, key_id, secret, token)
    parsed = parse_credentials(text)
    assert parsed[profile] == Credentials(key_id, secret, token)
    if profile != "other":
        assert parsed["other"] == Credentials("AKIAOTHER", "other-secret")


def test_botocore_reads_what_we_write(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "credentials"
    config = tmp_path / "config"
    credentials.write_text(set_credentials(EXISTING_CREDENTIALS, "openssm", "AKIDEXAMPLE", SECRET))
    config.write_text(
        set_config(EXISTING_CONFIG, "openssm", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION",
                 "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    session = botocore.session.Session(profile="openssm")
    found = session.get_credentials()
    assert (found.access_key, found.secret_key, found.token) == ("AKIDEXAMPLE", SECRET, None)
    assert session.get_config_variable("region") == "us-east-1"
    client = session.create_client("ssm")
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
