"""What the plugin's entry point (:mod:`openssm.client.plugin`) and its session machinery
(:mod:`openssm.client.plugin_session`) both need of the AWS CLI's calling convention: one place,
so neither imports the other back."""

from __future__ import annotations

from openssm.errors import OpenSSMError

TYPE_CHECKING = False  # typing is not imported for the version check
if TYPE_CHECKING:
    from typing import Final

# The AWS CLI passes the StartSession response, or the name of a variable holding it, starting so.
RESPONSE_ENV_PREFIX: Final = "AWS_SSM_START_SESSION_RESPONSE"
LEGACY_ARGC: Final = 4  # argv of the oldest CLIs: response, region, operation


class UsageError(OpenSSMError):
    """Arguments the plugin cannot work with; the message is printed as is."""
