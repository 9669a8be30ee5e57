"""The server's session logging options map onto ServerConfig."""

from __future__ import annotations

import pathlib
from typing import Any

import click
from click.testing import CliRunner

from openssm.logs.options import logging_config, logging_options
from openssm.services import ServerConfig


def _parse(*argv: str) -> ServerConfig:
    seen: dict[str, Any] = {}

    @click.command()
    @logging_options
    def command(**values: Any) -> None:
        seen.update(values)

    result = CliRunner().invoke(command, list(argv))
    assert result.exit_code == 0, result.output
    return ServerConfig(data_dir=pathlib.Path("/tmp/x"), **logging_config(seen))


def test_defaults() -> None:
    config = _parse()
    assert config.record_sessions and not config.record_input
    assert config.s3_endpoint_url is None and config.logs_endpoint_url is None and config.sink_region is None
    assert config.log_upload_retry_seconds == 2.0


def test_every_option() -> None:
    config = _parse(
        "--no-session-recording",
        "--record-input",
        "--s3-endpoint-url",
        "http://minio:9000",
        "--logs-endpoint-url",
        "http://logs:4566",
        "--sink-region",
        "eu-west-1",
        "--log-upload-retry",
        "0.5",
    )
    assert not config.record_sessions and config.record_input
    assert (config.s3_endpoint_url, config.logs_endpoint_url, config.sink_region) == (
        "http://minio:9000",
        "http://logs:4566",
        "eu-west-1",
    )
    assert config.log_upload_retry_seconds == 0.5
