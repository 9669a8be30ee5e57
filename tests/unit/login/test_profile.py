"""Where ``openssm login`` writes a profile, and that the client's own reader (``openssm start-session``)
and botocore (the AWS CLI) read it as written: credentials with their session token, the region and
the OpenSSM endpoint, and nothing else of the files lost."""

from __future__ import annotations

import datetime as dt
import pathlib

import boto3
import pytest

from openssm.client.aws_settings import client_settings
from openssm.login.profile import LoginSettings, config_path, credentials_path, save, stored_settings

SETTINGS = LoginSettings(
    issuer="https://idp.example.internal:8443/realms/ops",
    client_id="openssm-cli",
    role_arn="arn:aws:iam::000000000000:role/Operators",
    endpoint_url="https://ssm.example.internal:8443",
    region="eu-west-1",
)
EXPIRES = dt.datetime(2026, 12, 1, 13, 0, tzinfo=dt.UTC)


@pytest.fixture
def files(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SSM",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws" / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws" / "config"))
    return tmp_path


def test_a_saved_profile_is_read_back_by_the_client_and_by_botocore(files: pathlib.Path) -> None:
    credentials_path().parent.mkdir()
    credentials_path().write_text("[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = keep-me\n")
    save("ops", SETTINGS, "ASIAEXAMPLE", "secret", "token", EXPIRES)
    save("ops", SETTINGS, "ASIASECOND", "secret-2", "token-2", EXPIRES)  # a second login replaces the first
    assert (
        credentials_path().stat().st_mode & 0o777 == 0o600 and config_path().stat().st_mode & 0o777 == 0o600
    )
    assert "keep-me" in credentials_path().read_text() and "ASIAEXAMPLE" not in credentials_path().read_text()

    settings = client_settings("ssm", profile="ops")
    assert (
        settings.credentials.access_key_id == "ASIASECOND" and settings.credentials.session_token == "token-2"
    )
    assert settings.region == "eu-west-1" and settings.endpoint_url == "https://ssm.example.internal:8443"

    session = boto3.session.Session(profile_name="ops")
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.token) == ("ASIASECOND", "token-2")
    assert session.client("ssm").meta.endpoint_url == "https://ssm.example.internal:8443"

    stored = stored_settings("ops")
    assert (
        stored["openssm_oidc_issuer"] == SETTINGS.issuer
        and stored["openssm_oidc_expiration"] == "2026-12-01T13:00:00Z"
    )
