"""Where ``openssm login`` keeps a profile: the AWS CLI's own shared files.

Credentials go to the ``credentials`` file (``AWS_SHARED_CREDENTIALS_FILE``, default
``~/.aws/credentials``) as ``aws_access_key_id``/``aws_secret_access_key``/``aws_session_token``:
what the AWS CLI, boto3, the SDKs and ``openssm start-session`` read for a profile with no setup.
The ``config`` file (``AWS_CONFIG_FILE``, default ``~/.aws/config``) gets the profile's ``region``
and ``endpoint_url`` (so ``aws --profile P ssm …`` reaches OpenSSM without ``--endpoint-url``), and
the login settings (``openssm_oidc_*``, which botocore ignores) so that the next
``openssm login --oidc P`` needs no options. Files are replaced atomically and created mode 0600.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import tempfile
from typing import Final

from openssm.auth.credentials_file import config_section, parse_config, set_config, set_credentials

SETTING_PREFIX: Final = "openssm_oidc_"


def credentials_path() -> pathlib.Path:
    configured = os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
    return (
        pathlib.Path(configured).expanduser() if configured else pathlib.Path.home() / ".aws" / "credentials"
    )


def config_path() -> pathlib.Path:
    configured = os.environ.get("AWS_CONFIG_FILE")
    return pathlib.Path(configured).expanduser() if configured else pathlib.Path.home() / ".aws" / "config"


@dataclasses.dataclass(frozen=True, slots=True)
class LoginSettings:
    issuer: str
    client_id: str
    role_arn: str
    endpoint_url: str
    region: str
    ca_bundle: str | None = None  # PEM CAs for the identity provider's TLS
    duration_seconds: int | None = None

    def config_values(self) -> dict[str, str]:
        values = {
            f"{SETTING_PREFIX}issuer": self.issuer,
            f"{SETTING_PREFIX}client_id": self.client_id,
            f"{SETTING_PREFIX}role_arn": self.role_arn,
        }
        if self.ca_bundle:
            values[f"{SETTING_PREFIX}ca_bundle"] = self.ca_bundle
        if self.duration_seconds:
            values[f"{SETTING_PREFIX}duration_seconds"] = str(self.duration_seconds)
        return values


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _replace(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to a fresh 0600 file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def stored_settings(profile: str) -> dict[str, str]:
    """The profile's settings in the config file (``region``, ``endpoint_url``, ``openssm_oidc_*`` …)."""
    return parse_config(_read(config_path())).get(profile, {})


def save(
    profile: str,
    settings: LoginSettings,
    access_key_id: str,
    secret_access_key: str,
    session_token: str,
    expiration: dt.datetime,
) -> None:
    config_section(profile)  # refuses a profile name that cannot be a section
    credentials_text = set_credentials(
        _read(credentials_path()), profile, access_key_id, secret_access_key, session_token
    )
    _replace(credentials_path(), credentials_text)
    extra = settings.config_values()
    extra[f"{SETTING_PREFIX}expiration"] = expiration.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config_text = set_config(
        _read(config_path()), profile, region=settings.region, endpoint_url=settings.endpoint_url, extra=extra
    )
    _replace(config_path(), config_text)
