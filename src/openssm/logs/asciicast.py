"""asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/) as text lines, without I/O.

The writer turns relayed bytes into newline-terminated JSON lines for the caller to append to a
``.cast`` file. Terminal bytes arrive cut at arbitrary points (the agent cuts on UTF-8 boundaries,
retransmissions and ports do not), so each direction keeps an incremental UTF-8 decoder: a character
split across two messages is written once, whole, with the second message's time.

The header carries the terminal size. The client normally sends its Size before the agent's first
output (the agent waits 1 s before starting the shell); if output comes first, the header says 80x24
and the size arrives as a resize event.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import Final

DEFAULT_WIDTH: Final = 80
DEFAULT_HEIGHT: Final = 24
MAX_DIMENSION: Final = 10_000  # a Size message is client input: keep it sane


def _line(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": ")) + "\n"


def _time(t: float) -> float:
    return round(max(t, 0.0), 6)


def _decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


class AsciicastWriter:
    """One recording. Every method returns the text to append (possibly "")."""

    def __init__(
        self,
        *,
        timestamp: int,
        title: str = "",
        env: Mapping[str, str] | None = None,
        record_input: bool = False,
    ) -> None:
        self.timestamp = timestamp
        self.title = title
        self.env = dict(env or {"TERM": "xterm-256color", "SHELL": "/bin/sh"})
        self.record_input = record_input
        self.width = DEFAULT_WIDTH
        self.height = DEFAULT_HEIGHT
        self.header_written = False
        self._output = _decoder()
        self._input = _decoder()
        self.last_time = 0.0

    def header(self) -> str:
        if self.header_written:
            return ""
        self.header_written = True
        header: dict[str, object] = {
            "version": 2,
            "width": self.width,
            "height": self.height,
            "timestamp": self.timestamp,
            "env": self.env,
        }
        if self.title:
            header["title"] = self.title
        return _line(header)

    def _event(self, t: float, code: str, data: str) -> str:
        # Events must not go back in time even if a late frame carries an earlier clock.
        self.last_time = max(self.last_time, _time(t))
        return self.header() + _line([self.last_time, code, data])

    def output(self, data: bytes, t: float) -> str:
        text = self._output.decode(data)
        return self._event(t, "o", text) if text else self.header()

    def input(self, data: bytes, t: float) -> str:
        if not self.record_input:
            return ""
        text = self._input.decode(data)
        return self._event(t, "i", text) if text else ""

    def resize(self, cols: int, rows: int, t: float) -> str:
        cols = min(max(cols, 1), MAX_DIMENSION)
        rows = min(max(rows, 1), MAX_DIMENSION)
        if not self.header_written:
            # The first size the client reports is the recording's size.
            self.width, self.height = cols, rows
            return self.header()
        if (cols, rows) == (self.width, self.height):
            return ""
        self.width, self.height = cols, rows
        return self._event(t, "r", f"{cols}x{rows}")

    def finish(self, t: float) -> str:
        """Flush half characters left in the decoders (written as U+FFFD)."""
        out = self.header()
        tail = self._output.decode(b"", final=True)
        if tail:
            out += self._event(t, "o", tail)
        tail = self._input.decode(b"", final=True)
        if tail and self.record_input:
            out += self._event(t, "i", tail)
        return out


def read_cast(text: str) -> tuple[dict[str, object], list[tuple[float, str, str]]]:
    """Parse a ``.cast`` file's text (header, events); bad lines raise ValueError."""
    # Split on "\n" only: JSON strings may hold U+2028 or U+0085, which splitlines() would cut at.
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        raise ValueError("empty recording")
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("version") != 2:
        raise ValueError("not an asciicast v2 recording")
    events: list[tuple[float, str, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        item = json.loads(line)
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], int | float)):
            raise ValueError(f"line {number}: not an event")
        events.append((float(item[0]), str(item[1]), str(item[2])))
    return header, events
