"""``openssm run``: Run Command for a fleet, from the operator's machine.

SendCommand with the user's AWS credentials (the standard chain, ``--profile``, ``--region``,
``--endpoint-url``, as the AWS CLI takes them), then, with ``--wait`` (the default), a live table
of the invocations and a progress bar until the command ends (ListCommands and
ListCommandInvocations, polled), each node's status and exit code, and with ``--show-output`` what
each node printed (GetCommandInvocation). The exit status is 0 when every invocation succeeded, 1
when any did not, 255 when a call failed (as the AWS CLI's). A client-side command: it talks to the
SSM API only.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import botocore.exceptions
import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from openssm.client.api import ApiTarget
from openssm.client.parameters import ParameterError, parse_parameters
from openssm.errors import OpenSSMError

AWS_CLI_ERROR_EXIT: Final = 255
FAILED_EXIT: Final = 1
INTERRUPTED_EXIT: Final = 130
DEFAULT_DOCUMENT: Final = "AWS-RunShellScript"
# Command statuses that no longer change (AWS: "Understanding command statuses").
FINAL_COMMAND_STATUSES: Final = frozenset({"Success", "Failed", "TimedOut", "Cancelled"})
STATUS_STYLES: Final = {
    "Success": "green",
    "Failed": "red",
    "TimedOut": "red",
    "Cancelled": "yellow",
    "Cancelling": "yellow",
    "InProgress": "cyan",
    "Pending": "dim",
    "Delayed": "dim",
}


class RunError(OpenSSMError, click.ClickException):
    """Bad input; click prints it and exits 1."""


# -- the request (pure) -------------------------------------------------------------------------------


def parse_target(text: str) -> dict[str, Any]:
    """One ``--targets`` value as the AWS CLI takes it: ``Key=tag:Role,Values=web,db`` or JSON
    (``{"Key": …, "Values": […]}``, or a list of them)."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise RunError(f"--targets {text!r}: not valid JSON: {exc}") from exc
        items = value if isinstance(value, list) else [value]
        if len(items) != 1 or not isinstance(items[0], dict):
            raise RunError(f"--targets {text!r}: give one target per --targets")
        value = items[0]
    else:
        try:
            parsed = parse_parameters(stripped)
        except ParameterError as exc:
            raise RunError(f"--targets {text!r}: {exc}") from exc
        value = {"Key": (parsed.get("Key") or [""])[0], "Values": parsed.get("Values", [])}
    key, values = value.get("Key"), value.get("Values")
    if not isinstance(key, str) or not key or not isinstance(values, list) or not values:
        raise RunError(f"--targets {text!r}: expected Key=<key>,Values=<value>[,<value>…]")
    return {"Key": key, "Values": [str(item) for item in values]}


def parse_cloudwatch_config(text: str) -> dict[str, Any]:
    """``--cloud-watch-output-config``: ``CloudWatchOutputEnabled=true,CloudWatchLogGroupName=g`` or
    JSON."""
    try:
        if text.strip().startswith("{"):
            value = json.loads(text)
        else:
            value = {name: items[0] if items else "" for name, items in parse_parameters(text).items()}
    except (ParameterError, json.JSONDecodeError) as exc:
        raise RunError(f"--cloud-watch-output-config: {exc}") from exc
    if not isinstance(value, dict):
        raise RunError(
            "--cloud-watch-output-config must name CloudWatchOutputEnabled / CloudWatchLogGroupName"
        )
    config: dict[str, Any] = {}
    enabled = value.get("CloudWatchOutputEnabled")
    if enabled is not None:
        config["CloudWatchOutputEnabled"] = (
            enabled if isinstance(enabled, bool) else str(enabled).lower() == "true"
        )
    if value.get("CloudWatchLogGroupName"):
        config["CloudWatchLogGroupName"] = str(value["CloudWatchLogGroupName"])
    return config


def build_request(
    *,
    targets: Sequence[str],
    instance_ids: Sequence[str],
    document_name: str,
    parameters: str | None,
    comment: str | None = None,
    max_concurrency: str | None = None,
    max_errors: str | None = None,
    timeout_seconds: int | None = None,
    output_s3_bucket_name: str | None = None,
    output_s3_key_prefix: str | None = None,
    cloud_watch_output_config: str | None = None,
) -> dict[str, Any]:
    """The SendCommand request, as the AWS CLI would build it from the same options."""
    if bool(targets) == bool(instance_ids):
        raise RunError("name the nodes with --targets or with --instance-ids (one of them)")
    request: dict[str, Any] = {"DocumentName": document_name}
    if targets:
        request["Targets"] = [parse_target(text) for text in targets]
    else:
        request["InstanceIds"] = list(instance_ids)
    if parameters:
        try:
            request["Parameters"] = parse_parameters(parameters)
        except ParameterError as exc:
            raise RunError(f"--parameters: {exc}") from exc
    optional = {
        "Comment": comment,
        "MaxConcurrency": max_concurrency,
        "MaxErrors": max_errors,
        "TimeoutSeconds": timeout_seconds,
        "OutputS3BucketName": output_s3_bucket_name,
        "OutputS3KeyPrefix": output_s3_key_prefix,
    }
    request.update({name: value for name, value in optional.items() if value is not None})
    if cloud_watch_output_config:
        request["CloudWatchOutputConfig"] = parse_cloudwatch_config(cloud_watch_output_config)
    return request


# -- what the command looks like (pure) -----------------------------------------------------------------


def exit_code_of(invocation: dict[str, Any]) -> int | None:
    """The exit code an invocation reported: its first step that did not succeed, else its last;
    None while it has none (pending, or ended without running)."""
    plugins = invocation.get("CommandPlugins") or []
    finished = [plugin for plugin in plugins if plugin.get("Status") not in ("Pending", "InProgress")]
    if not finished:
        return None
    failing = [plugin for plugin in finished if plugin.get("Status") != "Success"]
    code = (failing[0] if failing else finished[-1]).get("ResponseCode")
    return code if isinstance(code, int) and code >= 0 else None


def render(command: dict[str, Any], invocations: Sequence[dict[str, Any]]) -> RenderableType:
    """The live view: the command's status and counts, a progress bar, one row per node."""
    total, done = int(command.get("TargetCount") or 0), int(command.get("CompletedCount") or 0)
    status, details = command.get("Status", ""), command.get("StatusDetails", "")
    heading = Text.assemble(
        ("Command ", "bold"),
        (command.get("CommandId", ""), "bold"),
        "  ",
        (status, STATUS_STYLES.get(status, "")),
        f" ({details})" if details and details != status else "",
        f"  {done}/{total} complete, errors: {command.get('ErrorCount', 0)}",
        f", {command['DeliveryTimedOutCount']} not delivered" if command.get("DeliveryTimedOutCount") else "",
    )
    table = Table(box=None, pad_edge=False)
    for column in ("Instance", "Name", "Status", "Details", "Exit code"):
        table.add_column(column, no_wrap=True)
    for invocation in invocations:
        code = exit_code_of(invocation)
        state = invocation.get("Status", "")
        table.add_row(
            invocation.get("InstanceId", ""),
            invocation.get("InstanceName", ""),
            Text(state, style=STATUS_STYLES.get(state, "")),
            invocation.get("StatusDetails", ""),
            "" if code is None else str(code),
        )
    bar = Table.grid()  # a grid row ends its line; a bare ProgressBar does not
    bar.add_row(ProgressBar(total=max(total, 1), completed=done if total else 1, width=60))
    return Group(heading, bar, table)


def exit_status(command: dict[str, Any], invocations: Iterable[dict[str, Any]]) -> int:
    """0 when every invocation succeeded, else 1."""
    if any(invocation.get("Status") != "Success" for invocation in invocations):
        return FAILED_EXIT
    return 0 if command.get("Status") == "Success" else FAILED_EXIT


# -- the calls -----------------------------------------------------------------------------------------


def _pages(call: Callable[..., dict[str, Any]], key: str, **arguments: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = call(**arguments, **({"NextToken": token} if token else {}))
        items.extend(page.get(key) or [])
        token = page.get("NextToken")
        if not token:
            return items


def snapshot(ssm: Any, command_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The command and its invocations now (sorted by instance id)."""
    [command] = ssm.list_commands(CommandId=command_id)["Commands"]
    invocations = _pages(
        ssm.list_command_invocations, "CommandInvocations", CommandId=command_id, Details=True
    )
    return command, sorted(invocations, key=lambda invocation: str(invocation.get("InstanceId")))


def watch(
    ssm: Any, command_id: str, console: Console, interval: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll until the command ends, showing it live on a terminal (redrawn in place), or once, at
    the end, into a pipe or file."""
    command, invocations = snapshot(ssm, command_id)
    if not console.is_terminal:
        while command.get("Status") not in FINAL_COMMAND_STATUSES:
            time.sleep(interval)
            command, invocations = snapshot(ssm, command_id)
        console.print(render(command, invocations))
        return command, invocations
    with Live(render(command, invocations), console=console, auto_refresh=False, transient=False) as live:
        while command.get("Status") not in FINAL_COMMAND_STATUSES:
            time.sleep(interval)
            command, invocations = snapshot(ssm, command_id)
            live.update(render(command, invocations), refresh=True)
    return command, invocations


def print_output(ssm: Any, command_id: str, invocations: Sequence[dict[str, Any]], console: Console) -> None:
    """What each node printed (GetCommandInvocation: up to 24,000 characters of stdout and 8,000 of
    stderr, as AWS keeps them)."""
    for invocation in invocations:
        instance_id = invocation["InstanceId"]
        try:
            found = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except botocore.exceptions.ClientError as exc:  # e.g. a plugin that never ran
            console.print(f"[dim]{instance_id}: no output ({exc})[/dim]")
            continue
        heading = f"output of {instance_id} ({found.get('Status')}, exit code {found.get('ResponseCode')})"
        console.print(f"[bold]── {heading} ──[/bold]", highlight=False, soft_wrap=True)
        stdout, stderr = found.get("StandardOutputContent") or "", found.get("StandardErrorContent") or ""
        if stdout:
            console.out(stdout, end="" if stdout.endswith("\n") else "\n", highlight=False)
        if stderr:
            console.print("[bold red]stderr:[/bold red]")
            console.out(stderr, end="" if stderr.endswith("\n") else "\n", highlight=False)


@click.command(
    "run",
    short_help="Run a command on a fleet of nodes and watch it (Run Command).",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--targets",
    "targets",
    multiple=True,
    help="Nodes to run on, as the AWS CLI takes them: Key=tag:Role,Values=web,db (tag value), "
    "Key=tag-key,Values=Role (tag present), Key=InstanceIds,Values=i-…,mi-…. Repeat to narrow "
    "(every target must match).",
)
@click.option(
    "--instance-ids", "instance_ids", multiple=True, help="Node ids, instead of --targets (repeatable)."
)
@click.option("--document-name", default=DEFAULT_DOCUMENT, show_default=True, help="The Command document.")
@click.option(
    "--parameters",
    help="Document parameters, JSON or shorthand, e.g. 'commands=uptime' or "
    '\'{"commands":["uptime","df -h"],"executionTimeout":["600"]}\'.',
)
@click.option("--comment", help="A comment (up to 100 characters).")
@click.option(
    "--max-concurrency", help="How many nodes run it at once: a number or a percentage (default 50)."
)
@click.option(
    "--max-errors",
    help="How many failures are allowed before the rest is not started: a number or a percentage (default 0).",
)
@click.option(
    "--timeout-seconds", type=int, help="Delivery timeout: a node not reached in time does not run it."
)
@click.option("--output-s3-bucket-name", help="Bucket that receives each node's output.")
@click.option("--output-s3-key-prefix", help="Key prefix in that bucket.")
@click.option(
    "--cloud-watch-output-config",
    help="CloudWatchOutputEnabled=true[,CloudWatchLogGroupName=GROUP] (default group /aws/ssm/<document>).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Watch until it ends, or print its id and return.",
)
@click.option("--show-output", is_flag=True, help="When it ends, print what each node printed.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between polls.")
@click.option("--endpoint-url", help="The SSM endpoint (the OpenSSM server's URL).")
@click.option("--profile", help="AWS profile to use.")
@click.option("--region", help="Region (default: $AWS_REGION or the profile's region).")
def run_command(
    targets: tuple[str, ...],
    instance_ids: tuple[str, ...],
    document_name: str,
    parameters: str | None,
    comment: str | None,
    max_concurrency: str | None,
    max_errors: str | None,
    timeout_seconds: int | None,
    output_s3_bucket_name: str | None,
    output_s3_key_prefix: str | None,
    cloud_watch_output_config: str | None,
    wait: bool,
    show_output: bool,
    interval: float,
    endpoint_url: str | None,
    profile: str | None,
    region: str | None,
) -> None:
    """Run a Command document on the nodes the targets name (SendCommand), and by default watch it
    until it ends: a live table of each node's status and exit code and a progress bar.

    The exit status is 0 when every node succeeded, 1 when any did not (failed, timed out, was
    cancelled or never ran), 255 when the SSM API refused a call. --no-wait prints the CommandId
    (and exits 0) for `aws ssm list-command-invocations` and friends.
    """
    request = build_request(
        targets=targets,
        instance_ids=[item.strip() for value in instance_ids for item in value.split(",") if item.strip()],
        document_name=document_name,
        parameters=parameters,
        comment=comment,
        max_concurrency=max_concurrency,
        max_errors=max_errors,
        timeout_seconds=timeout_seconds,
        output_s3_bucket_name=output_s3_bucket_name,
        output_s3_key_prefix=output_s3_key_prefix,
        cloud_watch_output_config=cloud_watch_output_config,
    )
    console = Console()
    ssm = ApiTarget(region=region, profile=profile, endpoint_url=endpoint_url).boto3_client("ssm")
    try:
        command_id = ssm.send_command(**request)["Command"]["CommandId"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        click.echo(f"\n{exc}", err=True)  # the AWS CLI's "\n%s\n"
        sys.exit(AWS_CLI_ERROR_EXIT)
    if not wait:
        click.echo(command_id)
        return
    try:
        command, invocations = watch(ssm, command_id, console, max(interval, 0.1))
        if show_output:
            print_output(ssm, command_id, invocations, console)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        click.echo(f"\n{exc}", err=True)
        sys.exit(AWS_CLI_ERROR_EXIT)
    except KeyboardInterrupt:
        click.echo(
            f"\nstopped watching; command {command_id} goes on (aws ssm cancel-command stops it)", err=True
        )
        sys.exit(INTERRUPTED_EXIT)
    sys.exit(exit_status(command, invocations))
