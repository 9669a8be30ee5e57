"""AWS shared ``credentials`` and ``config`` files as text: render, update in place, parse.

Pure text functions (no file access): the server's first-start bootstrap writes a profile the AWS
CLI, boto3 and our client read, and tests read them back (with :mod:`openssm.auth.credentials`,
the one reader of these files). Updates keep everything else in the
file (other profiles, comments, keys we do not set). Credentials files hold secrets in plain text
by AWS's design: whoever writes one must create it mode 0600.

Format (as botocore reads it): INI sections; ``credentials`` sections are named after the profile
(``[default]``, ``[ops]``), ``config`` sections are ``[default]`` or ``[profile <name>]``; keys
``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``, ``region``, ``output``,
``endpoint_url``; indented lines continue the previous key (nested settings).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping

from openssm.auth.credentials import AwsConfigError, parse_ini, shared_config
from openssm.errors import OpenSSMError

_KEY_LINE = re.compile(r"(?P<key>[^=:\s][^=:]*?)\s*[=:]")


class CredentialsFileError(OpenSSMError, ValueError):
    """Text that is not a valid AWS shared credentials/config file, or a value that cannot go in one."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """An AWS access key, as a credentials file holds it (a profile) or a service hands it out
    (temporary, with its ``expiration``): the agent signs with these."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expiration: datetime.datetime | None = None

    def __repr__(self) -> str:  # never let a secret reach a log line
        return f"Credentials(access_key_id={self.access_key_id!r}, expiration={self.expiration})"


def _check_profile(profile: str) -> None:
    if not profile or profile != profile.strip() or any(char in profile for char in "[]\r\n"):
        raise CredentialsFileError(f"invalid profile name {profile!r}")


def _check_value(key: str, value: str) -> None:
    if "\n" in value or "\r" in value or value != value.strip():
        raise CredentialsFileError(f"value of {key} must be one line without surrounding spaces")
    if not _KEY_LINE.fullmatch(f"{key} =") or key != key.strip() or key.startswith(("[", "#", ";")):
        raise CredentialsFileError(f"invalid key name {key!r}")


def config_section(profile: str) -> str:
    """The ``config`` file section of a profile: ``default`` or ``profile <name>``."""
    _check_profile(profile)
    return "default" if profile == "default" else f"profile {profile}"


def _section_name(line: str) -> str | None:
    stripped = line.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        return stripped[1:-1].strip()
    return None


def _key_of(line: str) -> str | None:
    if not line or line[0].isspace() or line.lstrip().startswith(("#", ";")):
        return None
    match = _KEY_LINE.match(line)
    return match.group("key").strip() if match else None


def set_values(text: str, section: str, values: Mapping[str, str | None]) -> str:
    """Set (or, for None, remove) keys of one section; create the section if it is missing.

    Other sections, comments and keys are kept as they are. A replaced key loses its old
    continuation lines.
    """
    for key, value in values.items():
        if value is not None:
            _check_value(key, value)
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _section_name(line) == section), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        start, end = len(lines) - 1, len(lines)
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if _section_name(lines[i]) is not None), len(lines)
        )
    body = lines[start + 1 : end]
    remaining = dict(values)
    kept: list[str] = []
    skipping_continuation = False
    for line in body:
        if skipping_continuation and line[:1].isspace() and line.strip():
            continue
        skipping_continuation = False
        line_key = _key_of(line)
        if line_key is not None and line_key in remaining:
            new_value = remaining.pop(line_key)
            skipping_continuation = True
            if new_value is not None:
                kept.append(f"{line_key} = {new_value}")
            continue
        kept.append(line)
    trailing: list[str] = []
    while kept and not kept[-1].strip():
        trailing.append(kept.pop())
    kept.extend(f"{key} = {value}" for key, value in remaining.items() if value is not None)
    kept.extend(trailing)
    lines[start + 1 : end] = kept
    return "\n".join(lines) + "\n"


def set_credentials(
    text: str, profile: str, access_key_id: str, secret_access_key: str, session_token: str | None = None
) -> str:
    """Put a profile's keys into ``credentials`` text (a stale session token is removed)."""
    _check_profile(profile)
    return set_values(
        text,
        profile,
        {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "aws_session_token": session_token,
        },
    )


def set_config(
    text: str,
    profile: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    output: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Put a profile's settings into ``config`` text; settings given as None are left untouched."""
    values: dict[str, str | None] = {}
    for key, value in (("region", region), ("endpoint_url", endpoint_url), ("output", output)):
        if value is not None:
            values[key] = value
    values.update(extra or {})
    return set_values(text, config_section(profile), values)


def render_credentials(
    profile: str, access_key_id: str, secret_access_key: str, session_token: str | None = None
) -> str:
    return set_credentials("", profile, access_key_id, secret_access_key, session_token)


def render_config(
    profile: str,
    *,
    region: str,
    endpoint_url: str | None = None,
    output: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    return set_config("", profile, region=region, endpoint_url=endpoint_url, output=output, extra=extra)


def _sections(text: str) -> dict[str, dict[str, str]]:
    """Sections as botocore reads them (:func:`openssm.auth.credentials.parse_ini`), flat values only."""
    try:
        parsed = parse_ini(text)
    except AwsConfigError as exc:
        raise CredentialsFileError(f"not an AWS shared config file: {exc}") from exc
    return {
        name: {key: value for key, value in values.items() if isinstance(value, str)}
        for name, values in parsed.items()
    }


def parse_credentials(text: str) -> dict[str, Credentials]:
    """Profiles that have both an access key id and a secret access key."""
    profiles: dict[str, Credentials] = {}
    for name, values in _sections(text).items():
        key_id = values.get("aws_access_key_id")
        secret = values.get("aws_secret_access_key")
        if key_id and secret:
            profiles[name] = Credentials(key_id, secret, values.get("aws_session_token") or None)
    return profiles


def parse_config(text: str) -> dict[str, dict[str, str]]:
    """Settings by profile name, grouped as botocore groups them (``[default]``, ``[profile x]``)."""
    try:
        profiles = shared_config(parse_ini(text)).profiles
    except AwsConfigError as exc:
        raise CredentialsFileError(f"not an AWS shared config file: {exc}") from exc
    return {
        name: {key: value for key, value in values.items() if isinstance(value, str)}
        for name, values in profiles.items()
    }
