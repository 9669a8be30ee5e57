"""Just-in-time access: OpenSSM's own API (``OpenSSM_20261201.*``) to request sessions on a target for
a while, approve, deny and revoke such requests, AWS's StartAccessRequest and GetAccessToken mapped
onto the same requests (``aws_api``), the grants they become (``security.access_grants``),
and the tasks that end grants on time and tell a webhook (``tasks``, started by the composition).

Importing this package registers the operations (``openssm.api.handlers`` imports it)."""

from openssm.api.access import aws_api as aws_api
from openssm.api.access import operations as operations
