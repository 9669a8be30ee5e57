"""Plain-text transcript of terminal output, without I/O: escape sequences removed, line editing applied.

Feed decoded or raw output bytes in any split; complete lines come back as they end, so a streaming
sink can ship them while the session runs. A small line editor keeps what a reader of the screen
would see on each line: ``\\r`` returns to the start of the line, backspace and cursor left/right
move within it, later characters overwrite, ``ESC[K`` erases to the end. Everything else that is not
text (colours, titles, cursor addressing, bells) is dropped.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

MAX_LINE_CHARS: Final = 16 * 1024  # a line longer than this is cut (ends a runaway line)
MAX_SEQUENCE_CHARS: Final = 4096  # an unterminated escape sequence longer than this is dropped

_TEXT_RUN: Final = re.compile(r"[^\x00-\x1f\x7f\x1b\x9b]+")
# Text, tabs and line ends only: the bulk of shell output, handled without the per-character editor.
_PLAIN_BLOCK: Final = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x1b\x9b]+")
_LONE_CR: Final = re.compile(r"\r(?!\n)")

_GROUND, _ESCAPE, _CSI, _OSC, _OSC_ESCAPE, _CHARSET = range(6)


class TranscriptBuilder:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line: list[str] = []
        self._cursor = 0
        self._state = _GROUND
        self._sequence: list[str] = []
        self._sequence_len = 0

    # -- public ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[str]:
        """Complete lines (without their newline) produced by this chunk."""
        return self.feed_text(self._decoder.decode(data))

    def feed_text(self, text: str) -> list[str]:
        lines: list[str] = []
        position, end = 0, len(text)
        while position < end:
            if self._state == _GROUND:
                if self._cursor == len(self._line):
                    block = _PLAIN_BLOCK.match(text, position)
                    if block is not None:
                        plain = block.group()
                        if "\r" in plain:  # only "\r\n" is a plain line end; a lone "\r" edits
                            lone = _LONE_CR.search(plain)
                            if lone is not None:
                                plain = plain[: lone.start()]
                        if plain:
                            self._plain(plain, lines)
                            position += len(plain)
                            continue
                match = _TEXT_RUN.match(text, position)
                if match is not None:
                    self._write(match.group(), lines)
                    position = match.end()
                    continue
                self._control(text[position], lines)
            else:
                self._in_sequence(text[position])
            position += 1
        return lines

    def finish(self) -> list[str]:
        """The last, unterminated line (if any) after the session ended."""
        lines = self.feed_text(self._decoder.decode(b"", final=True))
        if self._line:
            lines.append(self._take_line())
        return lines

    @property
    def pending(self) -> str:
        return "".join(self._line).rstrip()

    # -- text and controls ---------------------------------------------------------------------

    def _write(self, run: str, lines: list[str]) -> None:
        cursor = self._cursor
        if cursor == len(self._line):
            self._line.extend(run)
        else:  # overwrite from the cursor (past the end, the slice grows the line)
            self._line[cursor : cursor + len(run)] = run
        self._cursor = cursor + len(run)
        while len(self._line) >= MAX_LINE_CHARS:
            lines.append("".join(self._line[:MAX_LINE_CHARS]).rstrip())
            del self._line[:MAX_LINE_CHARS]
            self._cursor = max(self._cursor - MAX_LINE_CHARS, 0)

    def _plain(self, block: str, lines: list[str]) -> None:
        """Append text and whole lines at the end of the current line (the cursor is there)."""
        parts = block.replace("\r\n", "\n").split("\n")
        self._write(parts[0], lines)
        if len(parts) == 1:
            return
        lines.append(self._take_line())
        for part in parts[1:-1]:
            if len(part) < MAX_LINE_CHARS:
                lines.append(part.rstrip())
            else:
                self._write(part, lines)
                lines.append(self._take_line())
        self._write(parts[-1], lines)

    def _control(self, char: str, lines: list[str]) -> None:
        if char == "\n":
            lines.append(self._take_line())
        elif char == "\r":
            self._cursor = 0
        elif char == "\b":
            self._cursor = max(self._cursor - 1, 0)
        elif char == "\t":
            self._write("\t", lines)
        elif char == "\x1b":
            self._start(_ESCAPE)
        elif char == "\x9b":
            self._start(_CSI)
        # other C0 controls (BEL, SO/SI, NUL, DEL …) leave no mark on the text

    def _take_line(self) -> str:
        line = "".join(self._line).rstrip()
        self._line = []
        self._cursor = 0
        return line

    # -- escape sequences ----------------------------------------------------------------------

    def _start(self, state: int) -> None:
        self._state = state
        self._sequence = []
        self._sequence_len = 0

    def _in_sequence(self, char: str) -> None:
        self._sequence_len += 1
        if self._sequence_len > MAX_SEQUENCE_CHARS:
            self._state = _GROUND
            return
        state = self._state
        if state == _ESCAPE:
            if char == "[":
                self._start(_CSI)
            elif char in "]PX^_":  # OSC, DCS, SOS, PM, APC: strings ended by BEL or ST
                self._start(_OSC)
            elif char in "()*+-./#%":
                self._state = _CHARSET  # one more character names the set
            else:
                self._state = _GROUND  # two-character sequence (ESC 7, ESC =, ESC M …)
        elif state == _CHARSET:
            self._state = _GROUND
        elif state == _CSI:
            if "\x40" <= char <= "\x7e":
                self._csi(char, "".join(self._sequence))
                self._state = _GROUND
            elif len(self._sequence) < 64:
                self._sequence.append(char)
        elif state == _OSC:
            if char == "\x07":
                self._state = _GROUND
            elif char == "\x1b":
                self._state = _OSC_ESCAPE
        elif state == _OSC_ESCAPE:
            self._state = _GROUND if char == "\\" else _OSC

    def _csi(self, final: str, parameters: str) -> None:
        count = _first_number(parameters)
        if final == "K":
            mode = count if parameters else 0
            if mode == 0:
                del self._line[self._cursor :]
            elif mode == 1:
                for index in range(min(self._cursor + 1, len(self._line))):
                    self._line[index] = " "
            else:
                self._line = []
                self._cursor = 0
        elif final == "D":
            self._cursor = max(self._cursor - max(count, 1), 0)
        elif final == "C":
            self._cursor = min(self._cursor + max(count, 1), len(self._line), MAX_LINE_CHARS)
        elif final == "G":
            self._cursor = min(max(count, 1) - 1, len(self._line))
        elif final == "P":  # delete characters at the cursor
            del self._line[self._cursor : self._cursor + max(count, 1)]
        elif final == "@":  # insert blanks at the cursor
            self._line[self._cursor : self._cursor] = [" "] * min(max(count, 1), MAX_LINE_CHARS)


def _first_number(parameters: str) -> int:
    digits = parameters.lstrip("?>=").split(";", 1)[0]
    return int(digits) if digits.isdigit() and len(digits) <= 6 else 0


def strip_text(text: str) -> str:
    """The whole transcript of a finished piece of output (for tests and one-shot use)."""
    builder = TranscriptBuilder()
    lines = builder.feed_text(text)
    lines.extend(builder.finish())
    return "\n".join(lines)
