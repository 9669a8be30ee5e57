"""Server-side request security: who is calling (SigV4), and may they (IAM policies; each decision goes to
the audit trail, ``openssm.store.audit_log``)."""

from openssm.security.authorization import AuditBatch, audited, authorize, refuse_by_rule
from openssm.security.errors import AccessDenied, AuthError
from openssm.security.facts import RequestFacts, client_facts
from openssm.security.identity import Identity, authenticate, authenticate_managed_instance

__all__ = [
    "AccessDenied",
    "AuditBatch",
    "AuthError",
    "Identity",
    "RequestFacts",
    "audited",
    "authenticate",
    "authenticate_managed_instance",
    "authorize",
    "client_facts",
    "refuse_by_rule",
]
