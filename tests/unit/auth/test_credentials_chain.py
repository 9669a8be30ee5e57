"""Our reading of the AWS configuration against botocore's, the reader the AWS CLI and boto3 use.

botocore is the oracle: wherever :mod:`openssm.auth.credentials` answers (rather than raising
NotServed), a boto3 session made as the client's fallback makes it (``Session(profile_name,
region_name).client(service, endpoint_url)``) must resolve the same access key, secret, session
token, region, endpoint and CA bundle from the same files and environment. The explicit cases make
sure that the common sources are really answered by us, not handed to botocore.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openssm.auth.credentials import AwsConfigError, ClientSettings, NotServed, parse_ini, shared_config
from openssm.client.aws_settings import client_settings

KEY_A, SECRET_A = "AKIDFROMENV00000000A", "env-secret"
KEY_C, SECRET_C = "AKIDCREDFILE0000000C", "credentials-file-secret"
KEY_F, SECRET_F = "AKIDCONFIGFILE00000F", "config-file-secret"


@contextlib.contextmanager
def environment(home: pathlib.Path, env: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``env`` for AWS (nothing of the machine's), HOME in ``home``, no instance metadata."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith("AWS_") or name.endswith(("_PROXY", "_proxy")) or name == "BOTO_CONFIG":
                del os.environ[name]
        os.environ.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", **env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def botocore_view(
    service: str, profile: str | None, region: str | None, endpoint: str | None
) -> tuple[str, str, str | None, str, str, str | None]:
    session = boto3.session.Session(profile_name=profile, region_name=region)
    credentials = session.get_credentials()
    assert credentials is not None
    frozen = credentials.get_frozen_credentials()
    client = session.client(service, endpoint_url=endpoint)
    ca_bundle = session._session.get_config_variable("ca_bundle")
    return (
        frozen.access_key,
        frozen.secret_key,
        frozen.token or None,
        client.meta.region_name,
        client.meta.endpoint_url,
        ca_bundle,
    )


def our_view(settings: ClientSettings) -> tuple[str, str, str | None, str, str, str | None]:
    credentials = settings.credentials
    return (
        credentials.access_key_id,
        credentials.secret_access_key,
        credentials.session_token,
        settings.region,
        settings.endpoint_url,
        settings.ca_bundle,
    )


def check(
    home: pathlib.Path,
    env: Mapping[str, str],
    config: str | None = None,
    credentials: str | None = None,
    *,
    service: str = "ssm",
    profile: str | None = None,
    region: str | None = None,
    endpoint: str | None = None,
) -> ClientSettings | None:
    """Ours equals botocore's wherever ours answers; returns ours (None: NotServed)."""
    aws = home / ".aws"
    aws.mkdir(parents=True, exist_ok=True)
    for name, text in (("config", config), ("credentials", credentials)):
        path = aws / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
    with environment(home, env):
        try:
            ours = client_settings(service, profile=profile, region=region, endpoint_url=endpoint)
        except NotServed:
            return None
        assert our_view(ours) == botocore_view(service, profile, region, endpoint)
        return ours


def served(home: pathlib.Path, *args: Any, **kwargs: Any) -> ClientSettings:
    settings = check(home, *args, **kwargs)
    assert settings is not None, "a common source must be answered without botocore"
    return settings


# -- the sources we answer ---------------------------------------------------------------------------

CONFIG = """\
[default]
region = eu-west-3

[profile dev]
region = us-west-2
endpoint_url = http://config-endpoint.example:8443

[profile static]
region = ap-southeast-2
aws_access_key_id = AKIDCONFIGFILE00000F
aws_secret_access_key = config-file-secret
aws_session_token = config-token
"""
CREDENTIALS = """\
[default]
aws_access_key_id = AKIDCREDFILE0000000C
aws_secret_access_key = credentials-file-secret

[dev]
aws_access_key_id = AKIDCREDFILE0000000C
aws_secret_access_key = credentials-file-secret
aws_security_token = legacy-token
aws_session_token = session-token

[static]
region = sa-east-1
"""
ENV_KEYS = {"AWS_ACCESS_KEY_ID": KEY_A, "AWS_SECRET_ACCESS_KEY": SECRET_A}


def test_environment_keys_win_unless_a_profile_is_named(tmp_path: pathlib.Path) -> None:
    env = {**ENV_KEYS, "AWS_SESSION_TOKEN": "t1", "AWS_DEFAULT_REGION": "us-east-2"}
    settings = served(tmp_path, env, CONFIG, CREDENTIALS)
    assert (settings.credentials.source, settings.credentials.session_token) == ("env", "t1")
    assert settings.endpoint_url == "https://ssm.us-east-2.amazonaws.com"
    # AWS_SECURITY_TOKEN is read first (botocore's order).
    assert (
        served(tmp_path, {**env, "AWS_SECURITY_TOKEN": "t0"}, CONFIG, CREDENTIALS).credentials.session_token
        == "t0"
    )
    # AWS_PROFILE does not disable them, --profile does.
    assert served(tmp_path, {**env, "AWS_PROFILE": "dev"}, CONFIG, CREDENTIALS).credentials.source == "env"
    named = served(tmp_path, env, CONFIG, CREDENTIALS, profile="dev")
    assert (named.credentials.access_key_id, named.credentials.session_token) == (KEY_C, "legacy-token")


def test_shared_credentials_file_then_config_file(tmp_path: pathlib.Path) -> None:
    default = served(tmp_path, {}, CONFIG, CREDENTIALS)
    assert (default.credentials.source, default.region) == ("shared-credentials-file", "eu-west-3")
    dev = served(tmp_path, {"AWS_PROFILE": "dev"}, CONFIG, CREDENTIALS)
    assert dev.endpoint_url == "http://config-endpoint.example:8443"
    static = served(tmp_path, {"AWS_DEFAULT_PROFILE": "static", "AWS_PROFILE": "dev"}, CONFIG, CREDENTIALS)
    # The credentials file's [static] has no key, so the config file's keys are used; its region
    # in the credentials file overrides the config file's (botocore merges the two).
    assert (static.credentials.source, static.credentials.access_key_id) == ("config-file", KEY_F)
    assert static.region == "sa-east-1"


def test_region_and_endpoint_precedence(tmp_path: pathlib.Path) -> None:
    env = {**ENV_KEYS, "AWS_REGION": "ca-central-1"}  # AWS_REGION: not botocore's
    assert served(tmp_path, env, CONFIG, CREDENTIALS).region == "eu-west-3"
    assert served(tmp_path, env, CONFIG, CREDENTIALS, region="me-central-1").region == "me-central-1"
    urls = {"AWS_ENDPOINT_URL": "http://global.example", "AWS_ENDPOINT_URL_SSM": "http://ssm.example:1"}
    assert served(tmp_path, {**env, **urls}, CONFIG, CREDENTIALS).endpoint_url == "http://ssm.example:1"
    assert served(
        tmp_path, {**env, **urls}, CONFIG, CREDENTIALS, endpoint="https://x.example"
    ).endpoint_url == ("https://x.example")
    del urls["AWS_ENDPOINT_URL_SSM"]
    assert served(tmp_path, {**env, **urls}, CONFIG, CREDENTIALS).endpoint_url == "http://global.example"
    ignore = {**env, **urls, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "TRUE"}
    assert served(tmp_path, ignore, CONFIG, CREDENTIALS).endpoint_url == "https://ssm.eu-west-3.amazonaws.com"
    services = CONFIG.replace("[profile dev]", "[profile dev]\nservices = mine") + (
        "\n[services mine]\nssm =\n  endpoint_url = http://services.example\n"
        "kms =\n  endpoint_url = http://kms.example\n"
    )
    assert (
        served(tmp_path, {"AWS_PROFILE": "dev"}, services, CREDENTIALS).endpoint_url
        == "http://services.example"
    )
    assert served(tmp_path, {"AWS_PROFILE": "dev"}, services, CREDENTIALS, service="kms").endpoint_url == (
        "http://kms.example"
    )


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-central-2", "ap-southeast-7", "il-central-1", "mx-central-1"]
)
@pytest.mark.parametrize("service", ["ssm", "kms"])
def test_aws_endpoints_by_region(tmp_path: pathlib.Path, region: str, service: str) -> None:
    settings = served(tmp_path, {**ENV_KEYS, "AWS_DEFAULT_REGION": region}, service=service)
    assert settings.endpoint_url == f"https://{service}.{region}.amazonaws.com"


def test_file_locations_and_ca_bundle(tmp_path: pathlib.Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "c").write_text(CREDENTIALS)
    (elsewhere / "f").write_text(
        CONFIG.replace("[default]", "[default]\nca_bundle = /etc/ssl/from-config.pem")
    )
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": "~/elsewhere/c",
        "WHERE": "elsewhere",
        "AWS_CONFIG_FILE": "$HOME/$WHERE/f",
    }
    settings = served(tmp_path, env)
    assert settings.ca_bundle == "/etc/ssl/from-config.pem"
    assert served(tmp_path, {**env, "AWS_CA_BUNDLE": "/tmp/env.pem"}).ca_bundle == "/tmp/env.pem"


def test_ini_quirks_are_botocores(tmp_path: pathlib.Path) -> None:
    config = (
        '[DEFAULT]\nregion = us-west-1\n\n[profile "two words"]\noutput = json\n\n'
        "[profile default]\nregion = eu-north-1\n\n[default]\nregion = eu-south-1\n"
    )
    credentials = "[two words]\nAWS_Access_Key_ID = AKIDCREDFILE0000000C\naws_secret_access_key = s\n"
    settings = served(tmp_path, {}, config, credentials, profile="two words")
    assert (settings.region, settings.credentials.access_key_id) == ("us-west-1", KEY_C)  # [DEFAULT] applies
    assert served(tmp_path, ENV_KEYS, config).region == "eu-south-1"  # the later section wins


# -- the sources botocore answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "config", "credentials", "profile"),
    [
        ({}, "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n", CREDENTIALS, "r"),
        ({}, "[default]\nregion = us-east-1\ncredential_process = /bin/false\n", None, None),
        ({}, "[default]\nregion = us-east-1\nsso_account_id = 1\nsso_role_name = r\n", None, None),
        ({"AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ROLE_ARN": "arn:aws:iam::1:role/x"}, CONFIG, None, None),
        ({"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds"}, CONFIG, None, None),
        ({"AWS_PROFILE": "missing"}, CONFIG, CREDENTIALS, None),
        ({}, CONFIG, CREDENTIALS, "missing"),
        ({"AWS_ACCESS_KEY_ID": KEY_A}, CONFIG, None, None),  # half a key pair
        ({}, CONFIG, "[default]\naws_access_key_id = AKID\n", None),
        ({}, "[default\nregion = x\n", CREDENTIALS, None),  # botocore: ConfigParseError
        ({**ENV_KEYS, "AWS_USE_FIPS_ENDPOINT": "true"}, CONFIG, None, None),
        ({**ENV_KEYS, "AWS_DEFAULT_REGION": "cn-north-1"}, None, None, None),
        ({**ENV_KEYS, "AWS_CREDENTIAL_EXPIRATION": "2999-01-01T00:00:00Z"}, CONFIG, None, None),
        (ENV_KEYS, None, None, None),  # no region: botocore asks instance metadata or fails
        (ENV_KEYS, CONFIG.replace("[default]", "[default]\nproxy_ca_bundle = /x.pem"), None, None),
    ],
)
def test_what_only_botocore_resolves_is_left_to_it(
    tmp_path: pathlib.Path,
    env: dict[str, str],
    config: str | None,
    credentials: str | None,
    profile: str | None,
) -> None:
    assert check(tmp_path, env, config, credentials, profile=profile) is None


# -- any mix of them --------------------------------------------------------------------------------------

PROFILES = ["default", "dev", "ops"]
keys = st.sampled_from([(KEY_C, SECRET_C), (KEY_F, SECRET_F), ("AKIDOTHER0000000000X", "other")])
tokens = st.one_of(st.none(), st.sampled_from([("aws_session_token", "tok"), ("aws_security_token", "sec")]))
# Mostly what we answer, sometimes what botocore must (another partition, an invalid name...).
regions = st.sampled_from(
    [None, "us-east-1", "us-east-1", "eu-west-1", "ap-south-2", "cn-north-1", "bad_region"]
)
endpoints = st.sampled_from([None, None, "http://a.example:1", "https://b.example/p", "ftp://no"])
extras = st.lists(
    st.sampled_from(["output = json"] * 6 + ["role_arn = arn:aws:iam::1:role/r", "credential_process = /bin/false",
                     "sso_role_name = r", "use_fips_endpoint = true", "ignore_configured_endpoint_urls = true"]),
    max_size=2,
    unique=True,
)  # fmt: skip


@st.composite
def sections(draw: st.DrawFn, config: bool) -> str:
    text = []
    for name in draw(st.lists(st.sampled_from(PROFILES), unique=True, min_size=1, max_size=3)):
        header = name if not config or name == "default" else f"profile {name}"
        lines = [f"[{header}]"]
        if draw(st.integers(0, 3)):
            key, secret = draw(keys)
            lines += [f"aws_access_key_id = {key}", f"aws_secret_access_key = {secret}"]
            token = draw(tokens)
            if token:
                lines.append(f"{token[0]} = {token[1]}")
        region = draw(regions)
        if region:
            lines.append(f"region = {region}")
        endpoint = draw(endpoints)
        if endpoint:
            lines.append(f"endpoint_url = {endpoint}")
        lines += draw(extras) if config else []
        text.append("\n".join(lines))
    return "\n\n".join(text) + "\n"


def files(config: bool) -> st.SearchStrategy[str | None]:
    """A file four times in five, else none."""
    return st.integers(0, 4).flatmap(lambda n: sections(config=config) if n else st.none())


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    env = {}
    if draw(st.booleans()):
        env.update(ENV_KEYS)
        if draw(st.booleans()):
            env[draw(st.sampled_from(["AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"]))] = "envtok"
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        if draw(st.integers(0, 4)) == 0:
            env[name] = draw(st.sampled_from([*PROFILES, "absent"]))
    for name, values in (
        ("AWS_DEFAULT_REGION", regions),
        ("AWS_REGION", regions),
        ("AWS_ENDPOINT_URL", endpoints),
        ("AWS_ENDPOINT_URL_SSM", endpoints),
    ):
        value = draw(values)
        if value is not None and draw(st.booleans()):
            env[name] = value
    return env


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    env=environments(),
    config=files(config=True),
    credentials=files(config=False),
    profile=st.sampled_from([None, None, *PROFILES, "absent"]),
    region=st.one_of(st.none(), st.just("eu-central-1")),
    endpoint=st.one_of(st.none(), st.just("http://explicit.example:8443")),
)
def test_any_configuration_we_answer_is_answered_as_botocore_answers_it(
    env: dict[str, str],
    config: str | None,
    credentials: str | None,
    profile: str | None,
    region: str | None,
    endpoint: str | None,
) -> None:
    with tempfile.TemporaryDirectory() as home:
        check(pathlib.Path(home), env, config, credentials, profile=profile, region=region, endpoint=endpoint)


# -- the parser alone ---------------------------------------------------------------------------------------


def test_nested_values_and_parse_errors() -> None:
    parsed = parse_ini("[profile a]\ns3 =\n  addressing_style = path\n  max = 10\nregion = x\n")
    assert shared_config(parsed).profiles["a"] == {
        "s3": {"addressing_style": "path", "max": "10"},
        "region": "x",
    }
    for text in ("[a]\nx = 1\n[a]\ny = 2\n", "no section\n", "[a]\ns3 =\n  no-equals-sign\n"):
        with pytest.raises(AwsConfigError):
            parse_ini(text)
