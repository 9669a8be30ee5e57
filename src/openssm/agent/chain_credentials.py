"""Credentials of a node that joined with IAM credentials, as an EC2 instance does: whatever the
standard AWS credential chain yields (botocore's resolver, as the AWS CLI uses it: environment,
shared credentials and config files and their profiles, SSO, credential processes, container and
instance metadata), refreshed by botocore before they expire."""

from __future__ import annotations

import asyncio
from typing import Any

import botocore.exceptions
import botocore.session

from openssm.agent.signing import CredentialsError
from openssm.auth.credentials_file import Credentials


class ChainCredentials:
    """Credentials from the standard AWS chain, as the AWS CLI finds them (``profile``: a named
    profile; None: the default chain), for a node that joined with IAM credentials."""

    def __init__(self, profile: str | None = None) -> None:
        self.profile = profile
        self._session = botocore.session.Session(profile=profile)
        self._found: Any = None
        self._lock = asyncio.Lock()

    async def current(self) -> Credentials:
        async with self._lock:  # botocore may refresh (or look them up) with blocking calls
            return await asyncio.to_thread(self._frozen)

    def _frozen(self) -> Credentials:
        try:
            if self._found is None:
                self._found = self._session.get_credentials()
            if self._found is None:
                where = f"profile {self.profile!r}" if self.profile else "the AWS credential chain"
                raise CredentialsError(
                    f"no AWS credentials found in {where} (environment, ~/.aws/credentials and "
                    "config, SSO, credential_process, container or instance metadata)"
                )
            frozen = self._found.get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:  # e.g. ProfileNotFound, a failed refresh
            raise CredentialsError(f"AWS credentials: {exc}") from exc
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)
