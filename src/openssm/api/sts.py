"""STS Query API: GetCallerIdentity (who am I), which AWS answers for any valid credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openssm.api.registry import query_action
from openssm.api.request import ApiRequest

STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"


@query_action("sts", "GetCallerIdentity", xmlns=STS_XMLNS)
async def get_caller_identity(request: ApiRequest, form: Mapping[str, str]) -> Any:
    # No permission is needed: AWS answers even when a policy explicitly denies it.
    principal = request.require_identity().principal
    return {"UserId": principal.user_id, "Account": principal.account, "Arn": principal.arn}
