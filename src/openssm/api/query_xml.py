"""AWS Query protocol (IAM, STS) response and error rendering."""

from __future__ import annotations

import datetime as dt
from typing import Any
from xml.sax.saxutils import escape


def _render(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            if child is None:
                continue
            out.append(f"<{key}>")
            _render(child, out)
            out.append(f"</{key}>")
    elif isinstance(value, list | tuple):
        for child in value:
            out.append("<member>")
            _render(child, out)
            out.append("</member>")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, dt.datetime):
        out.append(value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    elif value is not None:
        out.append(escape(str(value)))


def render_response(action: str, xmlns: str, result: Any, request_id: str) -> str:
    out = [f'<{action}Response xmlns="{escape(xmlns)}">']
    if result is not None:
        out.append(f"<{action}Result>")
        _render(result, out)
        out.append(f"</{action}Result>")
    out.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>")
    return "".join(out)


def render_error(code: str, message: str, status: int, request_id: str) -> str:
    kind = "Receiver" if status >= 500 else "Sender"
    return (
        f"<ErrorResponse><Error><Type>{kind}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
