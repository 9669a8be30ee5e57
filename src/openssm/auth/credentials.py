"""Where an AWS client's credentials, region and endpoint come from, as botocore decides (pure).

``openssm start-session`` and the ``session-manager-plugin`` drop-in sign their few API calls
themselves (:mod:`openssm.auth.sigv4`): importing botocore alone takes longer than the rest of
the client's start-up. This module decides what botocore would, from the environment and the
text of the shared ``config`` and ``credentials`` files, for the sources whose result needs no
I/O beyond reading them:

* environment variables (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, the token in
  ``AWS_SECURITY_TOKEN`` or ``AWS_SESSION_TOKEN``), unless a profile was named explicitly;
* the profile (``--profile``, else ``AWS_DEFAULT_PROFILE``, ``AWS_PROFILE``, else ``default``)
  with static keys in the ``credentials`` file, or failing that in the ``config`` file;
* the region (explicit, ``AWS_DEFAULT_REGION``, the profile's ``region``), the endpoint
  (explicit, ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``, the profile's ``services``
  section, its ``endpoint_url``, else AWS's own for the ``aws`` partition) and the CA bundle
  (``AWS_CA_BUNDLE``, the profile's ``ca_bundle``).

Everything else raises :class:`NotServed`, and the caller asks botocore instead: assume-role
chains (``role_arn``), web identity, SSO, ``credential_process``, ``aws login``, container and
instance metadata, FIPS/dual-stack and other partitions' endpoints, proxy settings in the config
file, and every case where botocore would raise an error (a missing profile, a file it cannot
parse, half a key pair...), so that users see botocore's own error. The order of the checks is
botocore's credential chain (``botocore.credentials.create_credential_resolver``): a source that
botocore consults *before* a static key makes the static key unusable here.

The files are parsed as botocore parses them (``botocore.configloader``): ``configparser``'s
``RawConfigParser`` with its defaults (so ``[DEFAULT]`` applies to every section, keys are
lower-cased, duplicates are errors), indented blocks under a key become a nested mapping, and
``config`` sections named ``profile X`` (split like a shell word), ``sso-session X`` and
``services X`` are grouped; ``credentials`` sections are profiles as they are.
"""

from __future__ import annotations

import configparser
import re
import shlex
from collections.abc import Mapping
from typing import Final, NamedTuple, TypeAlias

from openssm.errors import OpenSSMError

IniValue: TypeAlias = str | dict[str, str]
Section: TypeAlias = dict[str, IniValue]

DEFAULT_PROFILE: Final = "default"
ENV_ACCESS_KEY: Final = "AWS_ACCESS_KEY_ID"
ENV_SECRET_KEY: Final = "AWS_SECRET_ACCESS_KEY"
ENV_TOKENS: Final = ("AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")  # botocore's order
FILE_ACCESS_KEY: Final = "aws_access_key_id"
FILE_SECRET_KEY: Final = "aws_secret_access_key"
FILE_TOKENS: Final = ("aws_security_token", "aws_session_token")
# Profile keys that make botocore use a credential source this module leaves to it.
_ASSUME_ROLE: Final = "role_arn"
_WEB_IDENTITY_FILE: Final = "web_identity_token_file"
_LOGIN: Final = "login_session"
_PROCESS: Final = "credential_process"
_PROXY_KEYS: Final = ("proxy_ca_bundle", "proxy_client_cert", "proxy_use_forwarding_for_https")
# botocore's partitions.json: the "aws" partition, whose endpoints are <service>.<region>.amazonaws.com.
_AWS_PARTITION_REGION: Final = re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$")
_REGION_LABEL: Final = re.compile(r"^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{,63}(?<!-)$")  # botocore's check
_ENDPOINT: Final = re.compile(r"^https?://[^/?#\s]+", re.IGNORECASE)


class AwsConfigError(OpenSSMError, ValueError):
    """Text that botocore would refuse to read as a shared config or credentials file."""


class NotServed(OpenSSMError):
    """botocore must decide this: a source or setting this module does not resolve itself."""


# Value types are NamedTuples rather than dataclasses: this module is on the way to every client's
# first API call, and a frozen dataclass costs about 1 ms to define, a NamedTuple a tenth of that.


class StaticCredentials(NamedTuple):
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    source: str  # where they came from, in botocore's words ("env", "shared-credentials-file", "config-file")

    def __repr__(self) -> str:  # never show the secret
        return f"StaticCredentials({self.access_key_id!r}, source={self.source!r})"


class SharedConfig(NamedTuple):
    """The ``config`` file grouped as botocore groups it."""

    profiles: dict[str, Section]
    sso_sessions: dict[str, Section]
    services: dict[str, Section]


class SharedFiles(NamedTuple):
    """The two files' parsed sections; None when the file does not exist (botocore: ConfigNotFound)."""

    config: dict[str, Section] | None = None
    credentials: dict[str, Section] | None = None


class ClientSettings(NamedTuple):
    """Everything a signed call to one service needs."""

    service: str
    credentials: StaticCredentials
    region: str
    endpoint_url: str
    ca_bundle: str | None
    profile: str


# -- the files -----------------------------------------------------------------------------------------


def parse_ini(text: str) -> dict[str, Section]:
    """Sections of a shared config or credentials file (``botocore.configloader.raw_config_parse``)."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise AwsConfigError(str(exc)) from exc
    sections: dict[str, Section] = {}
    for name in parser.sections():
        section: Section = {}
        for option in parser.options(name):
            value = parser.get(name, option)
            section[option] = _nested(value) if value.startswith("\n") else value
        sections[name] = section
    return sections


def _nested(value: str) -> dict[str, str]:
    """An indented block under a key (``s3 =\\n  addressing_style = path``) as a mapping."""
    nested: dict[str, str] = {}
    for line in value.splitlines():
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise AwsConfigError(f"nested setting without '=': {line!r}")
        key, _, item = line.partition("=")
        nested[key.strip()] = item.strip()
    return nested


def _second_word(name: str) -> str | None:
    """``profile "my name"`` → ``my name``; anything but exactly two shell words → None."""
    try:
        words = shlex.split(name)
    except ValueError:
        return None
    return words[1] if len(words) == 2 else None


def shared_config(sections: Mapping[str, Section]) -> SharedConfig:
    """Group ``config`` sections (``botocore.configloader.build_profile_map``); later sections
    of the same name win, as in botocore (``[default]`` and ``[profile default]`` included)."""
    grouped = SharedConfig({}, {}, {})
    for name, values in sections.items():
        if name.startswith("profile"):
            target = grouped.profiles
        elif name.startswith("sso-session"):
            target = grouped.sso_sessions
        elif name.startswith("services"):
            target = grouped.services
        elif name == DEFAULT_PROFILE:
            grouped.profiles[name] = dict(values)
            continue
        else:
            continue
        key = _second_word(name)
        if key is not None:
            target[key] = dict(values)
    return grouped


def merged_profiles(files: SharedFiles) -> dict[str, Section]:
    """botocore's ``Session.full_config['profiles']``: the config file's profiles, with each
    credentials-file section's keys laid over the profile of the same name."""
    profiles = {name: dict(values) for name, values in shared_config(files.config or {}).profiles.items()}
    for name, values in (files.credentials or {}).items():
        profiles.setdefault(name, {}).update(values)
    return profiles


# -- the chain --------------------------------------------------------------------------------------------


def _truthy(value: IniValue | None) -> bool:
    """botocore's ``ensure_boolean`` for a string setting."""
    return isinstance(value, str) and value.lower() == "true"


def _setting(environ: Mapping[str, str], env_name: str, scoped: Section, key: str) -> IniValue | None:
    """A config chain value: the environment variable (if set at all), else the profile's key."""
    if env_name in environ:
        return environ[env_name]
    return scoped.get(key)


def profile_name(environ: Mapping[str, str], explicit: str | None) -> tuple[str, bool]:
    """The profile botocore uses, and whether it was named (explicitly or by the environment)."""
    if explicit:
        return explicit, True
    for name in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE"):
        if name in environ:
            value = environ[name]
            if not value:
                raise NotServed(f"{name} is set but empty")
            return value, True
    return DEFAULT_PROFILE, False


def resolve_credentials(
    environ: Mapping[str, str], files: SharedFiles, profile: str, *, explicit_profile: bool
) -> StaticCredentials:
    """Static credentials, following botocore's chain; NotServed where another source comes first."""
    if not explicit_profile and environ.get(ENV_ACCESS_KEY):
        if not environ.get(ENV_SECRET_KEY):
            raise NotServed(f"{ENV_ACCESS_KEY} without {ENV_SECRET_KEY}")
        if environ.get("AWS_CREDENTIAL_EXPIRATION"):
            raise NotServed("refreshable environment credentials (AWS_CREDENTIAL_EXPIRATION)")
        token = next((environ[name] for name in ENV_TOKENS if environ.get(name)), None)
        return StaticCredentials(environ[ENV_ACCESS_KEY], environ[ENV_SECRET_KEY], token, "env")
    merged = merged_profiles(files).get(profile, {})
    if _ASSUME_ROLE in merged and _WEB_IDENTITY_FILE not in merged:
        raise NotServed("an assume-role profile (role_arn)")
    if merged.get(_WEB_IDENTITY_FILE) or "AWS_WEB_IDENTITY_TOKEN_FILE" in environ:
        raise NotServed("web identity")
    if any(key.startswith("sso_") for key in merged):
        raise NotServed("an SSO profile")
    from_credentials_file = (files.credentials or {}).get(profile, {})
    if FILE_ACCESS_KEY in from_credentials_file:
        return _file_credentials(from_credentials_file, "shared-credentials-file")
    if _LOGIN in merged:
        raise NotServed("an `aws login` profile")
    if _PROCESS in merged:
        raise NotServed("credential_process")
    from_config_file = shared_config(files.config or {}).profiles.get(profile, {})
    if FILE_ACCESS_KEY in from_config_file:
        return _file_credentials(from_config_file, "config-file")
    raise NotServed("no static credentials (container, instance metadata or none at all)")


def _file_credentials(section: Section, source: str) -> StaticCredentials:
    key_id, secret = section.get(FILE_ACCESS_KEY), section.get(FILE_SECRET_KEY)
    if not isinstance(key_id, str) or not isinstance(secret, str):
        raise NotServed(f"{source}: no usable {FILE_SECRET_KEY}")  # botocore: PartialCredentialsError
    token = next((section[name] for name in FILE_TOKENS if name in section), None)
    if token is not None and not isinstance(token, str):
        raise NotServed(f"{source}: a nested session token")
    return StaticCredentials(key_id, secret, token, source)


def resolve_region(environ: Mapping[str, str], scoped: Section, explicit: str | None) -> str:
    region = explicit or _setting(environ, "AWS_DEFAULT_REGION", scoped, "region")
    if not isinstance(region, str) or not region:
        raise NotServed("no region configured (botocore asks instance metadata, or fails)")
    if not _REGION_LABEL.match(region):
        raise NotServed(f"region {region!r} is not a valid host label")
    return region


def resolve_endpoint(
    service: str,
    environ: Mapping[str, str],
    config: SharedConfig,
    scoped: Section,
    region: str,
    explicit: str | None,
) -> str:
    """The endpoint URL botocore would call for ``service`` (its service id in snake case)."""
    for flag, env_name in (
        ("use_fips_endpoint", "AWS_USE_FIPS_ENDPOINT"),
        ("use_dualstack_endpoint", "AWS_USE_DUALSTACK_ENDPOINT"),
    ):
        if _truthy(_setting(environ, env_name, scoped, flag)):
            raise NotServed(f"{flag}")
    endpoint = explicit or _configured_endpoint(service, environ, config, scoped)
    if endpoint is None:
        if not _AWS_PARTITION_REGION.match(region):
            raise NotServed(f"region {region} is outside the aws partition")
        endpoint = f"https://{service}.{region}.amazonaws.com"
    if not isinstance(endpoint, str) or not _ENDPOINT.match(endpoint):
        raise NotServed(f"endpoint {endpoint!r} is not an http(s) URL")
    return endpoint


def _configured_endpoint(
    service: str, environ: Mapping[str, str], config: SharedConfig, scoped: Section
) -> IniValue | None:
    if _truthy(
        _setting(environ, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", scoped, "ignore_configured_endpoint_urls")
    ):
        return None
    for name in (f"AWS_ENDPOINT_URL_{service.upper()}", "AWS_ENDPOINT_URL"):
        if environ.get(name):
            return environ[name]
    services_name = scoped.get("services")
    if services_name is not None:
        section = config.services.get(services_name) if isinstance(services_name, str) else None
        if not section:
            raise NotServed(f"the services section {services_name!r} does not exist")
        nested = section.get(service)
        if isinstance(nested, dict) and nested.get("endpoint_url"):
            return nested["endpoint_url"]
    return scoped.get("endpoint_url") or None


def resolve(
    service: str,
    environ: Mapping[str, str],
    files: SharedFiles,
    *,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> ClientSettings:
    """Settings for signed calls to ``service``, as a botocore client made with
    ``Session(profile_name=profile, region_name=region).client(service, endpoint_url=...)`` would
    use them; raises :class:`NotServed` for anything botocore must decide."""
    name, named = profile_name(environ, profile)
    merged = merged_profiles(files)
    if named and name not in merged:
        raise NotServed(f"profile {name!r} does not exist")  # botocore: ProfileNotFound
    scoped = merged.get(name, {})
    if any(key in scoped for key in _PROXY_KEYS):
        raise NotServed("proxy settings in the config file")
    credentials = resolve_credentials(environ, files, name, explicit_profile=bool(profile))
    resolved_region = resolve_region(environ, scoped, region)
    config = shared_config(files.config or {})
    endpoint = resolve_endpoint(service, environ, config, scoped, resolved_region, endpoint_url)
    ca_bundle = _setting(environ, "AWS_CA_BUNDLE", scoped, "ca_bundle")
    if ca_bundle is not None and (not isinstance(ca_bundle, str) or not ca_bundle):
        raise NotServed("an empty or nested ca_bundle")
    return ClientSettings(service, credentials, resolved_region, endpoint, ca_bundle, name)
