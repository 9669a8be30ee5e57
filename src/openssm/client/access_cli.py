"""``openssm access``: ask for just-in-time access to a managed node, and list, approve, deny or revoke
such requests, with your AWS credentials (as ``aws`` would: ``--profile``, ``--region``,
``--endpoint-url``). Output is JSON (times as ISO 8601, as the AWS CLI prints them) or, with
``--output text``, one tab-separated line per request. A refused call prints the AWS CLI's error line
and exits 255, as the AWS CLI does."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

import click

from openssm.click_options import option_group
from openssm.client.access_api import AccessApi, ApiError

AWS_CLI_ERROR_EXIT: Final = 255
STATUSES: Final = ("Pending", "Approved", "Denied", "Revoked", "Expired")
TEXT_COLUMNS: Final = (
    "AccessRequestId",
    "Status",
    "Requester",
    "Target",
    "DocumentName",
    "DurationSeconds",
    "ExpirationDate",
    "Reason",
)
_DURATION: Final = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WAIT_INTERVAL: Final = 2.0
F = TypeVar("F", bound=Callable[..., Any])


def parse_duration(text: str) -> int:
    """Seconds in ``90``, ``90s``, ``15m``, ``1h``, ``1h30m`` …"""
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    parts = _DURATION.findall(value)
    if not parts or "".join(f"{number}{unit}" for number, unit in parts) != value:
        raise click.BadParameter(
            f"{text!r} is not a duration such as 90s, 15m, 1h or 1h30m", param_hint="--duration"
        )
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _iso(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()
    return value


def readable(value: Any) -> Any:
    """Timestamps (``…Date``, ``PendingUntil``) as ISO 8601, as the AWS CLI shows them."""
    if isinstance(value, dict):
        return {
            key: _iso(item) if key.endswith("Date") or key == "PendingUntil" else readable(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [readable(item) for item in value]
    return value


def _text_line(request: dict[str, Any]) -> str:
    return "\t".join("" if request.get(key) is None else str(request[key]) for key in TEXT_COLUMNS)


def _print(result: dict[str, Any], output: str) -> None:
    shown = readable(result)
    if output == "text":
        requests = shown.get("AccessRequests") or (
            [shown["AccessRequest"]] if "AccessRequest" in shown else []
        )
        for request in requests:
            click.echo(_text_line(request))
        return
    click.echo(json.dumps(shown, indent=4))


# --endpoint-url, --profile and --region, as ``aws`` has them (also ``openssm join-session``'s).
connection_options = option_group(
    click.option(
        "--endpoint-url",
        help="OpenSSM's endpoint (default: $AWS_ENDPOINT_URL_SSM, $AWS_ENDPOINT_URL or the profile's endpoint_url).",
    ),
    click.option(
        "--profile", help="Named profile from your AWS config/credentials files (default: $AWS_PROFILE)."
    ),
    click.option(
        "--region", help="Region to sign requests for (default: $AWS_REGION or the profile's region)."
    ),
)

_common = option_group(
    connection_options,
    click.option(
        "--output",
        type=click.Choice(["json", "text"]),
        default="json",
        show_default=True,
        help="json: the API's answer; text: one tab-separated line per request.",
    ),
)


def _api(options: dict[str, Any]) -> AccessApi:
    return AccessApi.configured(
        profile=options.get("profile"), region=options.get("region"), endpoint_url=options.get("endpoint_url")
    )


@contextlib.contextmanager
def aws_cli_errors() -> Iterator[None]:
    """A refused call prints the AWS CLI's error line and exits 255, as ``aws`` does."""
    try:
        yield
    except ApiError as exc:  # worded as botocore words it
        click.echo(f"\n{exc}", err=True)  # the AWS CLI's "\n%s\n"
        sys.exit(AWS_CLI_ERROR_EXIT)


def _run(work: Callable[[], dict[str, Any]], output: str) -> None:
    with aws_cli_errors():
        result = work()
    _print(result, output)


@click.group("access", short_help="Request, approve, deny and revoke just-in-time access to nodes.")
def access_group() -> None:
    """Just-in-time access: ask for sessions on a managed node for a while; someone allowed
    openssm:ApproveAccessRequest on that node approves (never the requester); the grant ends by
    itself when its time is up (ending the requester's sessions on the node) or when revoked."""


@access_group.command("request")
@click.option("--target", required=True, help="Managed node id (mi-… or i-…).")
@click.option(
    "--document-name", help="Session document the sessions use, e.g. AWS-StartSSHSession (default: a shell)."
)
@click.option(
    "--duration",
    required=True,
    help="How long the grant lasts once approved: 90s, 15m, 1h, 1h30m (up to 12h).",
)
@click.option(
    "--reason", required=True, help="Why you need access (shown to approvers and sent to the webhook)."
)
@click.option("--wait/--no-wait", default=False, show_default=True, help="Wait until the request is decided.")
@_common
def request_command(
    target: str, document_name: str | None, duration: str, reason: str, wait: bool, **options: Any
) -> None:
    """Ask for access to a managed node (prints the request; its id is what approvers approve)."""
    seconds = parse_duration(duration)

    def work() -> dict[str, Any]:
        api = _api(options)
        body: dict[str, Any] = {"Target": target, "DurationSeconds": seconds, "Reason": reason}
        if document_name:
            body["DocumentName"] = document_name
        result = api.call("RequestAccess", body)
        if wait:
            result = _wait_for_decision(api, result["AccessRequest"])
        return result

    _run(work, options["output"])


def _wait_for_decision(api: AccessApi, request: dict[str, Any]) -> dict[str, Any]:
    filters = [
        {"key": "AccessRequestId", "value": request["AccessRequestId"]},
        {"key": "Requester", "value": request["Requester"]},  # what a policy for one's own requests asks
    ]
    while request.get("Status") == "Pending":
        time.sleep(WAIT_INTERVAL)
        found = api.call("ListAccessRequests", {"Filters": filters}).get("AccessRequests") or []
        if found:
            request = found[0]
    return {"AccessRequest": request}


@access_group.command("list")
@click.option("--mine", is_flag=True, help="Only your own requests.")
@click.option("--requester", help="Only the requests of this user (or role session) name.")
@click.option("--status", type=click.Choice(STATUSES), help="Only requests in this status.")
@click.option("--target", help="Only requests for this managed node.")
@click.option(
    "--max-items", type=click.IntRange(min=1), default=200, show_default=True, help="List at most this many."
)
@_common
def list_command(
    mine: bool, requester: str | None, status: str | None, target: str | None, max_items: int, **options: Any
) -> None:
    """List access requests, newest first."""

    def work() -> dict[str, Any]:
        api = _api(options)
        filters = []
        if mine:  # by ARN and by name (a user's, or a role session's): policies may condition on either
            arn = api.caller_arn()
            filters.append({"key": "RequesterArn", "value": arn})
            filters.append({"key": "Requester", "value": arn.rsplit("/", 1)[-1]})
        for key, value in (("Requester", requester), ("Status", status), ("Target", target)):
            if value:
                filters.append({"key": key, "value": value})
        listed: list[dict[str, Any]] = []
        token: str | None = None
        while len(listed) < max_items:
            body: dict[str, Any] = {"Filters": filters, "MaxResults": min(100, max_items - len(listed))}
            if token:
                body["NextToken"] = token
            page = api.call("ListAccessRequests", body)
            listed.extend(page.get("AccessRequests") or [])
            token = page.get("NextToken")
            if not token:
                break
        return {"AccessRequests": listed}

    _run(work, options["output"])


def _decision(operation: str, verb: str) -> Callable[..., None]:
    @click.argument("request_id", metavar="ID")
    @click.option("--reason", help=f"Why it is {verb} (recorded, and sent to the webhook).")
    @_common
    def decide(request_id: str, reason: str | None, **options: Any) -> None:
        def work() -> dict[str, Any]:
            body: dict[str, Any] = {"AccessRequestId": request_id}
            if reason:
                body["Reason"] = reason
            return _api(options).call(operation, body)

        _run(work, options["output"])

    return decide


access_group.command(
    "approve",
    help="Approve a pending request: the requester may start the sessions asked for until it expires.",
)(_decision("ApproveAccessRequest", "approved"))
access_group.command("deny", help="Deny a pending request.")(_decision("DenyAccessRequest", "denied"))
access_group.command(
    "revoke",
    help="End a grant now (the requester's sessions on the node end too), or withdraw a pending request.",
)(_decision("RevokeAccessRequest", "revoked"))
