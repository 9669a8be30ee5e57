"""Who is making a request: the identity facts policy evaluation and session ids depend on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

PrincipalType = Literal["User", "AssumedRole", "Account"]


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    arn: str  # arn:aws:iam::<acct>:user/<name> | arn:aws:sts::<acct>:assumed-role/<role>/<session>
    account: str
    type: PrincipalType
    user_id: str  # AIDA… for users, AROA…:<session> for assumed roles
    username: str | None  # IAM users only (aws:username is absent otherwise)
    session_name: str | None = None  # assumed roles: role session name (e.g. the mi- id)
    role_name: str | None = None  # assumed roles
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def friendly_name(self) -> str:
        """The name a session id starts with (``<name>-<17 hex>``)."""
        if self.username:
            return self.username
        if self.session_name:
            return self.session_name
        return self.account
