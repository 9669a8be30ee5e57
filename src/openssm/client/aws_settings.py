"""The thin reader around :mod:`openssm.auth.credentials`: the environment and the shared files.

The files are found and read as botocore finds and reads them: ``AWS_CONFIG_FILE`` (default
``~/.aws/config``) and ``AWS_SHARED_CREDENTIALS_FILE`` (default ``~/.aws/credentials``), with
``$VARS`` and ``~`` expanded, in the locale's encoding; a path that is not a file is no file.
Whatever this cannot read or parse is :class:`NotServed`: botocore then reads it, and reports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from openssm.auth.credentials import (
    AwsConfigError,
    ClientSettings,
    NotServed,
    Section,
    SharedFiles,
    parse_ini,
    resolve,
)

CONFIG_FILE_ENV = "AWS_CONFIG_FILE"
CREDENTIALS_FILE_ENV = "AWS_SHARED_CREDENTIALS_FILE"


def file_path(environ: Mapping[str, str], env_name: str, default: str) -> str:
    path = environ[env_name] if env_name in environ else default
    return os.path.expanduser(os.path.expandvars(path))


def read_sections(path: str) -> dict[str, Section] | None:
    """The file's sections; None if there is no such file."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as file:  # the locale's encoding, as configparser.read() opens it
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise NotServed(f"cannot read {path}: {exc}") from exc
    try:
        return parse_ini(text)
    except AwsConfigError as exc:
        raise NotServed(f"cannot parse {path}: {exc}") from exc


def shared_files(environ: Mapping[str, str]) -> SharedFiles:
    return SharedFiles(
        config=read_sections(file_path(environ, CONFIG_FILE_ENV, "~/.aws/config")),
        credentials=read_sections(file_path(environ, CREDENTIALS_FILE_ENV, "~/.aws/credentials")),
    )


def client_settings(
    service: str,
    *,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    """Settings for ``service`` as botocore would use them; raises NotServed when botocore must decide."""
    env = os.environ if environ is None else environ
    return resolve(service, env, shared_files(env), profile=profile, region=region, endpoint_url=endpoint_url)
