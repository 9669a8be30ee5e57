"""When each transcript line was written, kept beside the transcript so shipping later (after a sink
outage, or a restart) still gives CloudWatch Logs the real times.

``<SessionId>.log.times`` holds fixed-width records ``<byte offset in .log> <epoch ms>\\n``, one per
flush of the transcript (at most ten a second): every line ending at or before that offset was
written by that time. Fixed width lets a reader binary-search a long session's index.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Final

RECORD_SIZE: Final = 31  # 16 digits, space, 13 digits, newline


def times_path(log_path: pathlib.Path) -> pathlib.Path:
    return log_path.with_name(log_path.name + ".times")


def record(offset: int, epoch_ms: int) -> str:
    return f"{offset:016d} {epoch_ms:013d}\n"


def _parse(raw: bytes) -> tuple[int, int] | None:
    if len(raw) != RECORD_SIZE or raw[16:17] != b" " or raw[-1:] != b"\n":
        return None
    offset, ms = raw[:16], raw[17:30]
    if not (offset.isdigit() and ms.isdigit()):
        return None
    return int(offset), int(ms)


def timestamps(index: pathlib.Path, line_ends: Sequence[int], default_ms: int) -> list[int]:
    """A time for each line (given by its end offset, ascending): the first record at or after it,
    never decreasing; ``default_ms`` where the index has no answer (missing, or not yet written)."""
    if not line_ends:
        return []
    try:
        file = index.open("rb")
    except OSError:
        return [default_ms] * len(line_ends)
    with file:
        count = file.seek(0, 2) // RECORD_SIZE

        def at(position: int) -> tuple[int, int] | None:
            file.seek(position * RECORD_SIZE)
            return _parse(file.read(RECORD_SIZE))

        low, high = 0, count  # first record whose offset >= line_ends[0]
        while low < high:
            middle = (low + high) // 2
            found = at(middle)
            if found is not None and found[0] >= line_ends[0]:
                high = middle
            else:
                low = middle + 1
        result: list[int] = []
        position = low
        current = at(position) if position < count else None
        previous = 0
        for end in line_ends:
            while current is not None and current[0] < end:
                position += 1
                current = at(position) if position < count else None
            stamp = current[1] if current is not None else default_ms
            previous = max(previous, stamp)
            result.append(previous)
        return result
