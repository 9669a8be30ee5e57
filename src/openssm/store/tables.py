"""Database schema (SQLAlchemy Core). One metadata for SQLite (embedded) and PostgreSQL (scale-out).

Conventions: times are timezone-aware UTC (``UtcDateTime``); ids follow AWS formats; JSON blobs are
``JSON`` columns; secrets are never stored in plain text (``*_hash`` = SHA-256 hex of a random
token, ``*_encrypted`` = AES-GCM under the server's master key, see ``openssm.store.secrets``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Stores aware UTC datetimes; SQLite hands back naive ones, which we re-tag as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# -- server-wide settings (account id, master-key check value, schema facts) ----------------------
settings = Table(
    "settings",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

# -- IAM ------------------------------------------------------------------------------------------
iam_users = Table(
    "iam_users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("user_id", String(32), nullable=False, unique=True),  # AIDA…
    Column("arn", String(2048), nullable=False, unique=True),
    Column("path", String(512), nullable=False, default="/"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("password_hash", String(256)),  # scrypt, for console sign-in
    Column("mfa_secret_encrypted", LargeBinary),  # TOTP seed
    Column("tags", JSON, nullable=False, default=dict),
    Column("is_admin_bootstrap", Boolean, nullable=False, default=False),
)

iam_groups = Table(
    "iam_groups",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("group_id", String(32), nullable=False, unique=True),  # AGPA…
    Column("arn", String(2048), nullable=False, unique=True),
    Column("path", String(512), nullable=False, default="/"),
    Column("created_at", UtcDateTime, nullable=False),
)

iam_group_members = Table(
    "iam_group_members",
    metadata,
    Column("group_name", String(128), ForeignKey("iam_groups.name", ondelete="CASCADE"), primary_key=True),
    Column("user_name", String(64), ForeignKey("iam_users.name", ondelete="CASCADE"), primary_key=True),
)

iam_roles = Table(
    "iam_roles",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role_id", String(32), nullable=False, unique=True),  # AROA…
    Column("arn", String(2048), nullable=False, unique=True),
    Column("path", String(512), nullable=False, default="/"),
    Column("assume_role_policy", Text, nullable=False),
    Column("description", String(1000)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
)

iam_policies = Table(
    "iam_policies",
    metadata,
    Column("arn", String(2048), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("policy_id", String(32), nullable=False, unique=True),  # ANPA…
    Column("path", String(512), nullable=False, default="/"),
    Column("description", String(1000)),
    Column("default_version_id", String(16), nullable=False, default="v1"),
    Column("aws_managed", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

iam_policy_versions = Table(
    "iam_policy_versions",
    metadata,
    Column("policy_arn", String(2048), ForeignKey("iam_policies.arn", ondelete="CASCADE"), primary_key=True),
    Column("version_id", String(16), primary_key=True),
    Column("document", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# principal_type: "user" | "group" | "role"
iam_attachments = Table(
    "iam_attachments",
    metadata,
    Column("principal_type", String(8), primary_key=True),
    Column("principal_name", String(128), primary_key=True),
    Column("policy_arn", String(2048), ForeignKey("iam_policies.arn"), primary_key=True),
)

iam_inline_policies = Table(
    "iam_inline_policies",
    metadata,
    Column("principal_type", String(8), primary_key=True),
    Column("principal_name", String(128), primary_key=True),
    Column("policy_name", String(128), primary_key=True),
    Column("document", Text, nullable=False),
)

# Long-term (AKIA…, users) and temporary (ASIA…, managed instances / console) credentials.
# The secret is needed in clear to verify SigV4, so it is encrypted, not hashed.
access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("secret_encrypted", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False, default="Active"),  # Active | Inactive
    Column("principal_type", String(16), nullable=False),  # user | managed-instance | console
    Column("principal_name", String(128), nullable=False),  # user name or mi-… id
    Column("role_name", String(64)),  # the role temporary credentials act as
    Column("session_token_hash", String(64)),  # temporary credentials only
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),  # temporary credentials only
    Column("last_used_at", UtcDateTime),
    Column("last_used_service", String(64)),
    # GetSessionToken with an MFA code: when the code was checked (aws:MultiFactorAuthAge).
    Column("mfa_authenticated_at", UtcDateTime),
    # AssumeRoleWithWebIdentity: the IAM OIDC provider's ARN (aws:FederatedProvider).
    Column("federated_provider", String(2048)),
    Index("ix_access_keys_principal", "principal_type", "principal_name"),
)

# IAM OpenID Connect providers (CreateOpenIDConnectProvider): whose ID tokens
# AssumeRoleWithWebIdentity accepts. ``url`` is the issuer without "https://" (IAM's form, also the
# prefix of the provider's condition keys: ``<url>:aud``); ``scheme`` is "https", or "http" for a
# loopback issuer.
iam_oidc_providers = Table(
    "iam_oidc_providers",
    metadata,
    Column("arn", String(2048), primary_key=True),
    Column("url", String(255), nullable=False, unique=True),
    Column("scheme", String(8), nullable=False, default="https"),
    Column("client_ids", JSON, nullable=False, default=list),
    Column("thumbprints", JSON, nullable=False, default=list),
    Column("tags", JSON, nullable=False, default=dict),
    Column("created_at", UtcDateTime, nullable=False),
)

# The last TOTP time step accepted for a user's MFA device: a code is good once (console sign-in,
# GetSessionToken, EnableMFADevice), on every server node.
mfa_used_steps = Table(
    "mfa_used_steps",
    metadata,
    Column("user_name", String(64), primary_key=True),
    Column("last_step", BigInteger, nullable=False),
)

# -- managed nodes ------------------------------------------------------------------------------
activations = Table(
    "activations",
    metadata,
    Column("activation_id", String(36), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("iam_role", String(64), nullable=False),
    Column("description", String(256)),
    Column("default_instance_name", String(256)),
    Column("registration_limit", Integer, nullable=False, default=1),
    Column("registrations_count", Integer, nullable=False, default=0),
    Column("expiration_date", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(20), primary_key=True),  # mi-<17 hex>
    Column("activation_id", String(36)),
    Column("iam_role", String(64)),
    Column("name", String(256)),
    Column("public_key", Text, nullable=False),  # base64 DER SubjectPublicKeyInfo
    Column("public_key_type", String(16), nullable=False, default="Rsa"),
    Column("fingerprint", String(128), nullable=False),
    Column("registration_date", UtcDateTime, nullable=False),
    Column("computer_name", String(256)),
    Column("ip_address", String(64)),
    Column("platform_type", String(16)),
    Column("platform_name", String(128)),
    Column("platform_version", String(64)),
    Column("agent_name", String(64)),
    Column("agent_version", String(32)),
    Column("last_ping_at", UtcDateTime),
    # which gateway node holds this node's control channel (NULL = none)
    Column("control_node_id", String(64)),
    Column("control_connected_at", UtcDateTime),
    Column("tags", JSON, nullable=False, default=dict),
    Column("deregistered", Boolean, nullable=False, default=False),
    # PingStatus filters (Online: on a live node) and a node's failover (its control channels)
    Index("ix_instances_control_node", "control_node_id"),
)

# -- sessions -----------------------------------------------------------------------------------
sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(96), primary_key=True),
    Column("target", String(400), nullable=False),
    Column("document_name", String(128), nullable=False),
    Column("session_type", String(32), nullable=False),
    Column("owner_arn", String(2048), nullable=False),
    Column("owner_name", String(128), nullable=False),
    Column(
        "status", String(16), nullable=False
    ),  # Connecting | Connected | Disconnected | Terminating | Terminated | Failed
    Column("reason", String(256)),
    Column("details", String(1024)),
    Column("parameters", JSON, nullable=False, default=dict),  # name -> list[str], as the API took them
    Column("document_content", JSON, nullable=False),  # resolved document sent to the agent
    Column("run_as_user", String(64)),
    Column("node_id", String(64)),  # gateway node that carries the session
    Column("start_date", UtcDateTime, nullable=False),
    Column("end_date", UtcDateTime),
    Column("termination_reason", String(256)),
    Column("max_session_duration", Integer),  # minutes
    Column("idle_session_timeout", Integer),  # minutes
    Column("output_s3_url", String(2048)),
    Column("output_cloudwatch_url", String(2048)),
    Column("recording_path", String(2048)),
    Column("bytes_in", BigInteger, nullable=False, default=0),
    Column("bytes_out", BigInteger, nullable=False, default=0),
    Index("ix_sessions_status", "status"),
    Index("ix_sessions_target", "target"),
)

# Single-use channel tokens. kind: "client" (StreamUrl open frame), "agent-data", "agent-control",
# "join-read" | "join-write" (JoinSession).
channel_tokens = Table(
    "channel_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("channel_id", String(96), nullable=False),  # session id, or instance id for control
    Column("principal_arn", String(2048), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime),
    Index("ix_channel_tokens_channel", "channel_id"),
)

# -- session log shipping -------------------------------------------------------------------------
# One row per (session, sink): records are written locally first; this is the durable queue of what
# still has to reach S3 / CloudWatch Logs. status: streaming (CloudWatch, session running) |
# pending | done. ``shipped_bytes``: how much of the local file CloudWatch already has.
log_uploads = Table(
    "log_uploads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(96), nullable=False),
    Column("node_id", String(64), nullable=False),  # the node holding the local files
    Column("sink", String(16), nullable=False),  # s3 | cloudwatch
    Column("destination", String(2048), nullable=False),  # s3://bucket/key or log group name
    Column("local_path", String(2048), nullable=False),
    Column("encryption", String(2048)),  # S3: "AES256", or "aws:kms" / "aws:kms:<key id>"
    Column("status", String(16), nullable=False),
    Column("shipped_bytes", BigInteger, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", String(1024)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
    # CloudWatch only: the stream (None: the session id) and how lines become events ("text": one
    # event a line; "session-json": AWS's JSON session events, for streamed sessions).
    Column("log_stream", String(512)),
    Column("event_format", String(16), nullable=False, default="text", server_default="text"),
    Index("ix_log_uploads_status", "status", "node_id"),
)

# -- documents ----------------------------------------------------------------------------------
documents = Table(
    "documents",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("document_type", String(32), nullable=False),  # Session | Command
    Column("owner", String(2048), nullable=False),
    Column("default_version", String(16), nullable=False, default="1"),
    Column("latest_version", String(16), nullable=False, default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
)

document_versions = Table(
    "document_versions",
    metadata,
    Column("name", String(128), ForeignKey("documents.name", ondelete="CASCADE"), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("content", Text, nullable=False),
    Column("document_format", String(8), nullable=False, default="JSON"),  # JSON | YAML
    Column("content_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("version_name", String(128)),
)

# -- audit --------------------------------------------------------------------------------------
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", UtcDateTime, nullable=False),
    Column("principal_arn", String(2048), nullable=False),
    Column("action", String(128), nullable=False),
    Column("resource", String(2048), nullable=False),
    Column("decision", String(16), nullable=False),  # allowed | explicitDeny | implicitDeny
    Column("matched_statement", Text),  # policy arn/name + statement index/Sid that decided
    Column("source_ip", String(64)),
    # What the call asked for (CloudTrail's requestParameters), or what the server itself did
    # (serviceEventDetails of an event the server records as its own, e.g. ending a grant).
    Column("detail", JSON),
    Index("ix_audit_log_time", "time"),
)

# Signed digests of the audit trail (as CloudTrail's digest files): each covers the audit rows after
# the previous digest's last one, lists every row's hash, carries the chain of those hashes and the
# previous digest's hash, and is signed with the server's Ed25519 audit key (kept apart from the
# data directory). ``sequence`` is unique, so of two nodes sealing at once one wins.
audit_digests = Table(
    "audit_digests",
    metadata,
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("first_id", Integer, nullable=False),
    Column("last_id", Integer, nullable=False),
    Column("body", Text, nullable=False),  # canonical JSON, exactly as signed
    Column("signature", String(128), nullable=False),  # base64 Ed25519 signature of body
)

# -- console ------------------------------------------------------------------------------------
# Browser console sign-ins. The cookie carries a random token; only its SHA-256 is stored, and the
# CSRF token (derived from the cookie token) likewise. Sign-out sets ``revoked_at``.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False),  # the key's principal: IAM user, or role session name
    Column("access_key_id", String(32), nullable=False),  # the key used to sign in (must stay Active)
    Column("csrf_hash", String(64), nullable=False),
    Column("source_ip", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("mfa_authenticated_at", UtcDateTime),  # sign-in with a TOTP code (aws:MultiFactorAuthAge)
    Index("ix_console_sessions_user", "user_name"),
)

# -- scale-out ---------------------------------------------------------------------------------
gateway_nodes = Table(
    "gateway_nodes",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("public_url", String(2048), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
)

# -- Run Command ---------------------------------------------------------------------------------
# One row per SendCommand; its status is derived from its invocations when read.
commands = Table(
    "commands",
    metadata,
    Column("command_id", String(36), primary_key=True),
    Column("document_name", String(128), nullable=False),
    Column("document_version", String(16)),
    Column("document_content", JSON, nullable=False),  # sent to the agent with {{ }} still in place
    Column("parameters", JSON, nullable=False, default=dict),  # name -> list[str], defaults filled in
    Column("comment", String(100)),
    Column("instance_ids", JSON, nullable=False, default=list),  # as requested (empty with Targets)
    Column("targets", JSON, nullable=False, default=list),  # [{Key, Values}] as requested
    Column("requested_at", UtcDateTime, nullable=False),
    Column("delivery_deadline", UtcDateTime, nullable=False),  # requested_at + TimeoutSeconds
    Column("expires_after", UtcDateTime, nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("max_concurrency", String(7)),
    Column("max_errors", String(7)),
    Column("output_s3_region", String(20)),
    Column("output_s3_bucket_name", String(63)),
    Column("output_s3_key_prefix", String(500)),
    Column("cloudwatch_log_group_name", String(512)),
    Column("cloudwatch_output_enabled", Boolean, nullable=False, default=False, server_default=false()),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("owner_arn", String(2048), nullable=False),
    Index("ix_commands_requested_at", "requested_at"),
)

# status: Pending | InProgress | Success | Failed | TimedOut | Cancelling | Cancelled
command_invocations = Table(
    "command_invocations",
    metadata,
    Column("command_id", String(36), ForeignKey("commands.command_id"), primary_key=True),
    Column("instance_id", String(64), primary_key=True),
    Column("instance_name", String(255)),
    Column("status", String(16), nullable=False),
    Column("status_details", String(32), nullable=False),
    Column("dispatched_at", UtcDateTime),  # sent towards the agent: it holds a concurrency slot
    Column("delivered_at", UtcDateTime),  # agent_job_ack received
    Column("started_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("response_code", Integer, nullable=False, default=-1),
    Column("plugins", JSON, nullable=False, default=list),  # per step: name, status, code, output, …
    Column("standard_output", Text, nullable=False, default=""),
    Column("standard_error", Text, nullable=False, default=""),
    Index("ix_command_invocations_instance", "instance_id", "status"),
)

# -- just-in-time access ---------------------------------------------------------------------------
# A request for sessions on one target with one document, for a while. status: Pending → Approved →
# Expired | Revoked, or Pending → Denied | Expired (nobody decided in time). While Approved, the
# requester holds an inline grant policy (``grant_policy``) the server deletes when the grant ends.
access_requests = Table(
    "access_requests",
    metadata,
    Column("request_id", String(32), primary_key=True),  # ar-<17 hex>
    Column("requester_arn", String(2048), nullable=False),
    Column("requester_name", String(128), nullable=False),  # user name or role session name
    Column("requester_user_id", String(160), nullable=False),  # aws:userid
    Column("grant_holder_type", String(8), nullable=False),  # user | role: who holds the grant policy
    Column("grant_holder_name", String(128), nullable=False),
    Column("target", String(400), nullable=False),
    Column("document_name", String(128), nullable=False),
    Column("duration_seconds", Integer, nullable=False),
    Column("reason", String(1024), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("pending_until", UtcDateTime, nullable=False),  # undecided by then: Expired
    Column("decided_at", UtcDateTime),
    Column("decider_arn", String(2048)),
    Column("decider_name", String(128)),
    Column("decision_reason", String(1024)),
    Column("expires_at", UtcDateTime),  # the end of an approved grant
    Column("ended_at", UtcDateTime),  # when the grant (or the pending request) ended
    Column("ended_by_arn", String(2048)),  # who revoked it (NULL: it expired)
    Column("end_reason", String(256)),
    Index("ix_access_requests_status", "status", "expires_at"),
    Index("ix_access_requests_requester", "requester_arn"),
)

# The webhook's durable outbox: one row per delivery (a request or a decision), retried with backoff
# until the receiver answers 2xx. ``body`` is the JSON sent (and signed) every time.
access_webhook_deliveries = Table(
    "access_webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, unique=True),  # X-OpenSSM-Delivery
    Column("request_id", String(32), nullable=False),
    Column("event", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_by", String(64)),  # the node sending it now (one node per delivery)
    Column("claimed_until", UtcDateTime),
    Column("last_error", String(1024)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Index("ix_access_webhook_deliveries_due", "status", "next_attempt_at"),
)

__all__ = [name for name, value in globals().items() if isinstance(value, Table)] + [
    "UniqueConstraint",
    "metadata",
    "UtcDateTime",
]

# Live sessions whose owner refuses joins (OpenSSM's SetSessionJoinPolicy): a row while refused.
session_join_refusals = Table(
    "session_join_refusals",
    metadata,
    Column("session_id", String(96), primary_key=True),
    Column("refused_by", String(2048), nullable=False),
    Column("refused_at", UtcDateTime, nullable=False),
)

# Sessions into whose stream a gateway node put messages of its own (live-session join): how it
# renumbers both directions (``openssm.gateway.injection``), so that a relay made after a restart,
# or on another node after a crash, goes on with the same numbers.
session_splices = Table(
    "session_splices",
    metadata,
    Column("session_id", String(96), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("saved_at", UtcDateTime, nullable=False),
)

# KMS keys served by OpenSSM's KMS API (``openssm.api.kms``): the 256-bit key material is kept only
# encrypted under the server's master key (``SecretCipher``), never in clear.
kms_keys = Table(
    "kms_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("description", String(8192), nullable=False, default=""),
    Column("key_state", String(32), nullable=False),  # Enabled | Disabled
    Column("material_encrypted", LargeBinary, nullable=False),
    Column("created_by", String(2048), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# KMS aliases ("alias/<name>"): the names users give keys.
kms_aliases = Table(
    "kms_aliases",
    metadata,
    Column("alias_name", String(256), primary_key=True),
    Column("target_key_id", String(64), ForeignKey("kms_keys.key_id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# One row (id 1): a counter every change that can alter an authorisation decision bumps, in the same
# transaction, by triggers (migration 0011; ``openssm.store.authz_generation`` lists what they watch).
# Nodes cache credentials, principals and policies for as long as it stays the same.
authz_generation = Table(
    "authz_generation",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
)
