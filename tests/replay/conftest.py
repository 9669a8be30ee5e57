"""Loader for the golden wire captures (``reference/captures/*.jsonl``).

The captures are recorded data kept in the repository (``tests/captures``, copied from the
workspace's ``reference/captures``); ``$OPENSSM_CAPTURES`` points elsewhere. When they are missing,
capture tests are skipped with the reason — except in CI (``CI=true``), where that is an error.

Tests get events by asking for these parameters (each is one event dict, with ``capture`` = file
stem added; ids look like ``plugin-shell#6``):

* ``ws_binary_event`` — every ``ws-binary`` event of every capture;
* ``ws_text_event`` — every ``ws-text`` event (open frames);
* ``capture_name`` — every capture file stem;

and the ``load_capture`` fixture returns all events of one file by stem.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import captures_dir, in_ci, require

REPO_ROOT = Path(__file__).resolve().parents[2]
Event = dict[str, Any]


def _missing_reason() -> str | None:
    directory = captures_dir()
    if not directory.is_dir() or not any(directory.glob("*.jsonl")):
        return f"wire captures not found in {directory} (set OPENSSM_CAPTURES)"
    return None


def capture_names() -> list[str]:
    return sorted(path.stem for path in captures_dir().glob("*.jsonl"))


def read_capture(name: str) -> list[Event]:
    events = []
    with (captures_dir() / f"{name}.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                event = json.loads(line)
                event["capture"] = name
                events.append(event)
    return events


def events_of_kind(kind: str) -> list[Event]:
    return [event for name in capture_names() for event in read_capture(name) if event["kind"] == kind]


def event_id(event: Event) -> str:
    return f"{event['capture']}#{event['n']}"


_PARAMETERS: dict[str, Callable[[], list[Any]]] = {
    "ws_binary_event": lambda: events_of_kind("ws-binary"),
    "ws_text_event": lambda: events_of_kind("ws-text"),
    "capture_name": capture_names,
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, source in _PARAMETERS.items():
        if name not in metafunc.fixturenames:
            continue
        reason = _missing_reason()
        if reason is not None:
            if in_ci():
                raise pytest.UsageError(reason)
            metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.skip(reason=reason))])
            continue
        values = source()
        ids = [value if isinstance(value, str) else event_id(value) for value in values]
        metafunc.parametrize(name, values, ids=ids)


@pytest.fixture
def load_capture() -> Callable[[str], list[Event]]:
    reason = _missing_reason()
    require(reason is None, reason or "")
    return read_capture
