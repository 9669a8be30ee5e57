"""``openssm server`` options for session logging, kept here so the server command only applies them."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any, Final

import click

from openssm.click_options import file_option, option_group, seconds_option

# click parameter name -> ServerConfig field
_FIELDS = {
    "s3_endpoint_url": "s3_endpoint_url",
    "logs_endpoint_url": "logs_endpoint_url",
    "sink_region": "sink_region",
    "record_input": "record_input",
    "session_recording": "record_sessions",
    "log_upload_retry": "log_upload_retry_seconds",
    "audit_digest_interval": "audit_digest_seconds",
}
AUDIT_KEY_ENV: Final = "OPENSSM_AUDIT_KEY"


def default_audit_key_path() -> pathlib.Path:
    """Where the audit signing key is kept unless configured: ``$OPENSSM_AUDIT_KEY``, else under the
    user's configuration directory, away from the data directory."""
    configured = os.environ.get(AUDIT_KEY_ENV)
    if configured:
        return pathlib.Path(configured)
    base = os.environ.get("XDG_CONFIG_HOME") or str(pathlib.Path.home() / ".config")
    return pathlib.Path(base) / "openssm" / "audit-signing.key"


# The session logging options of a click command (they arrive as keyword arguments).
logging_options = option_group(
    click.option(
        "--session-recording/--no-session-recording",
        default=True,
        show_default=True,
        help="Record every session on the server (terminal recording and transcript, or the "
        "connections of port sessions) in DATA_DIR/sessions, then ship it where the preferences say.",
    ),
    click.option(
        "--record-input/--no-record-input",
        default=False,
        show_default=True,
        help="Also record what users type (passwords typed at prompts included).",
    ),
    click.option(
        "--s3-endpoint-url",
        default=None,
        help="S3-compatible storage for session logs (MinIO, Ceph …). Default: AWS, or "
        "AWS_ENDPOINT_URL_S3. Credentials come from the normal AWS chain.",
    ),
    click.option(
        "--logs-endpoint-url",
        default=None,
        help="CloudWatch Logs-compatible endpoint for session logs. Default: AWS, or "
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS.",
    ),
    click.option("--sink-region", default=None, help="Region of the log sinks (default: --region)."),
    seconds_option(
        "--log-upload-retry",
        minimum=0.1,
        default=2.0,
        help="Seconds before the first retry of a failed log upload (doubles up to 5 minutes).",
    ),
    file_option(
        "--audit-signing-key",
        exists=False,
        help="Ed25519 key (PEM) signing the digests of the audit trail and session recordings "
        "(`openssm audit verify`); created 0600 on first start, its public half beside it as "
        ".pub. Must be outside the data directory. Default: $OPENSSM_AUDIT_KEY or "
        "~/.config/openssm/audit-signing.key.",
    ),
    seconds_option(
        "--audit-digest-interval",
        minimum=1.0,
        default=60.0,
        help="Seconds between signed digests of the audit trail.",
    ),
)


def logging_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ServerConfig fields for the options :func:`logging_options` added."""
    config = {field: values[name] for name, field in _FIELDS.items() if name in values}
    if "audit_signing_key" in values:
        chosen = values["audit_signing_key"] or default_audit_key_path()
        config["audit_signing_key"] = chosen.expanduser().absolute()
    return config
