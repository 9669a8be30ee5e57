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
    """Regex source (to be full-matched) for a sequence of chunks, without catastrophic backtracking.

    A glob ``L0*L1*...*Ln`` (each ``Li`` literal text and ``?``) is written as ``L0``, then for each
    middle part an atomic group ``(?>star?Li)`` (the earliest ``Li`` after the text already
    matched, never reconsidered), then ``star Ln``. Taking the earliest occurrence of each middle
    part is always right for a glob (it leaves the most text for what follows), and it keeps the
    matching linear in practice: the plain translation (``.*`` per star) backtracks through every
    way of splitting the text among the stars, which a policy with a few dozen ``*`` (found by
    fuzzing) turned into minutes per request. Consecutive stars are one star.
    """
    parts: list[list[str]] = [[]]  # regex pieces of the literal parts between stars
    for text, wild in chunks:
        if not wild:
            parts[-1].append(re.escape(text))
            continue
        for token in _wild_tokens(text, qmark):
            if token is None:
                if parts[-1] or len(parts) == 1:
                    parts.append([])
            else:
                parts[-1].append(token)
    if len(parts) == 1:
        return "".join(parts[0])
    first, *middle, last = ("".join(part) for part in parts)
    return first + "".join(f"(?>{star}?{part})" for part in middle) + star + last


@functools.lru_cache(maxsize=8192)
def _wild_tokens(text: str, qmark: str) -> tuple[str | None, ...]:
    """Regex pieces of author-written text, with None for each ``*``."""
    tokens: list[str | None] = []
    for piece in _WILDCARDS.split(text):
        if piece == "*":
            tokens.append(None)
        elif piece == "?":
            tokens.append(qmark)
        elif piece:
            tokens.append(re.escape(piece))
    return tuple(tokens)


_WILDCARDS = re.compile(r"([*?])")


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
