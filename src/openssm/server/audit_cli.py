"""``openssm audit verify``: check the audit trail and the session recordings against their signed
digests (``openssm.logs.integrity``), as ``aws cloudtrail validate-logs`` checks CloudTrail's."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib

import click

from openssm.click_options import file_option
from openssm.logs.options import default_audit_key_path
from openssm.server.admin import Target, target_options
from openssm.server.cli import server_command
from openssm.server.config_file import default_map


def _moment(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@click.group("audit", short_help="Check the audit trail and session recordings for tampering.")
def audit_group() -> None:
    """The tamper-evident audit trail: every audit event and finished session recording is hashed,
    the hashes chained, and a digest signed with the server's audit key every minute."""


@audit_group.command("verify")
@target_options
@file_option(
    "--key",
    "key_path",
    help="The audit key (its .pub file is enough). Default: the server's --audit-signing-key, "
    "$OPENSSM_AUDIT_KEY or ~/.config/openssm/audit-signing.key.",
)
@click.option(
    "--from", "start", default=None, help="Check events from this time (ISO 8601, UTC unless given)."
)
@click.option("--to", "end", default=None, help="Check events up to this time.")
def verify_command(
    config: pathlib.Path | None,
    data_dir: pathlib.Path | None,
    database_url: str | None,
    key_path: pathlib.Path | None,
    start: str | None,
    end: str | None,
) -> None:
    """Report every audit record and recording changed, removed or inserted since it was sealed
    (and what is newer than the last digest, not sealed yet). Exit status 1 when anything was."""
    from openssm.logs import integrity  # cryptography and the store: only when the command runs
    from openssm.store.db import make_engine

    target = Target(config, data_dir, database_url)
    settings = default_map(server_command, config) if config else {}
    chosen = key_path or settings.get("audit_signing_key") or default_audit_key_path()
    path = pathlib.Path(chosen).expanduser()
    public = integrity.public_path(path)
    try:
        key = integrity.load_public_key(public if public.exists() else path)
    except integrity.IntegrityError as exc:
        raise click.ClickException(str(exc)) from exc
    window = (_moment(start, "--from"), _moment(end, "--to"))

    async def run() -> integrity.Report:
        engine = make_engine(target.database_url)
        try:
            return await integrity.verify(
                engine, key, target.data_dir / "sessions", start=window[0], end=window[1]
            )
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    for finding in report.findings:
        click.echo(str(finding))
    problems = sum(1 for finding in report.findings if finding.is_problem)
    click.echo(
        f"{report.digests} digests, {report.records} audit records and {report.recordings} recording "
        f"files checked: {'valid' if not problems else f'{problems} problems found'}"
    )
    if problems:
        raise SystemExit(1)
