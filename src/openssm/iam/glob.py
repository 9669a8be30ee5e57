"""IAM wildcard matching: ``*`` is any run of characters (even none), ``?`` is exactly one.

Patterns are built from *chunks*: text from the policy author, whose ``*``/``?`` are wildcards, and
text that must match literally (substituted policy variables, ``${*}``-style escapes). Everything
else is regex-escaped first, so a ``.`` in ``a.b`` never matches ``aXb`` and ``?`` is never a
regex quantifier.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

# (text, wildcards_active)
Chunk = tuple[str, bool]


def chunks_to_regex(chunks: Iterable[Chunk], *, star: str = ".*", qmark: str = ".") -> str:
    """Regex source (to be full-matched) for a sequence of chunks."""
    return "".join(_wild_regex(text, star, qmark) if wild else re.escape(text) for text, wild in chunks)


@functools.lru_cache(maxsize=8192)
def _wild_regex(text: str, star: str, qmark: str) -> str:
    # re.escape turns every "*" into "\*" and "?" into "\?", and a backslash into "\\", so the
    # two-character sequences below can only be escaped wildcards.
    return re.escape(text).replace("\\*", star).replace("\\?", qmark)


def glob_to_regex(pattern: str) -> str:
    return chunks_to_regex([(pattern, True)])


@functools.lru_cache(maxsize=8192)
def compile_regex(source: str, ignore_case: bool = False) -> re.Pattern[str]:
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile(source, flags)


def glob_match(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Whole-string wildcard match of *text* against *pattern*."""
    return compile_regex(glob_to_regex(pattern), ignore_case).fullmatch(text) is not None


def chunks_match(chunks: Iterable[Chunk], text: str, *, ignore_case: bool = False) -> bool:
    return compile_regex(chunks_to_regex(chunks), ignore_case).fullmatch(text) is not None
