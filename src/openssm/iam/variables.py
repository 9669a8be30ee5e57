"""Policy variables: ``${aws:username}``, ``${aws:PrincipalTag/team, 'none'}``, ``${*}``, ``${?}``, ``${$}``.

A policy string becomes a *template* of parts. Substitution is a single pass and its result is
literal text: a user name containing ``*`` cannot widen a pattern. Variables exist only in policies
with ``"Version": "2012-10-17"``; otherwise ``${...}`` is ordinary text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from openssm.errors import OpenSSMError
from openssm.iam.glob import Chunk

Context = Mapping[str, Sequence[str]]  # condition keys lowercased


class VariableSyntaxError(OpenSSMError, ValueError):
    """A ``${`` that does not form a valid policy variable."""


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyText:
    """Text written by the policy author: its ``*`` and ``?`` are wildcards where globs apply."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class LiteralText:
    """Text that always matches literally (from ``${*}``, ``${?}``, ``${$}``)."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class VariableRef:
    key: str  # lowercased: key names are case-insensitive
    default: str | None  # case-sensitive

    def resolve(self, context: Context) -> str | None:
        values = context.get(self.key)
        # Multivalued keys cannot be used as variables.
        if values is not None and len(values) == 1:
            return values[0]
        return self.default


Part = PolicyText | LiteralText | VariableRef
Template = tuple[Part, ...]

_ESCAPES = {"*": "*", "?": "?", "$": "$"}
_KEY = re.compile(r"[A-Za-z0-9_.:/\-@+=,]+")


def _parse_default(rest: str, whole: str) -> str:
    """``'text'`` with ``''`` for one quote, surrounded by optional whitespace."""
    rest = rest.strip()
    if len(rest) < 2 or rest[0] != "'" or rest[-1] != "'":
        raise VariableSyntaxError(f"policy variable {whole} has a default that is not quoted with '")
    inner = rest[1:-1]
    if re.search(r"(?<!')'(?!')", inner.replace("''", "")):
        raise VariableSyntaxError(f"policy variable {whole} has an unescaped ' in its default")
    return inner.replace("''", "'")


def _close_index(text: str, start: int) -> int:
    """Index of the ``}`` closing the variable opened at *start* (quotes may hide a ``}``)."""
    in_quote = False
    i = start + 2
    while i < len(text):
        char = text[i]
        if char == "'":
            in_quote = not in_quote
        elif char == "}" and not in_quote:
            return i
        i += 1
    raise VariableSyntaxError(f"unterminated policy variable in {text!r}")


def parse_template(text: str, *, variables: bool) -> Template:
    if not variables or "${" not in text:
        return (PolicyText(text),)
    parts: list[Part] = []
    pos = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            break
        if start > pos:
            parts.append(PolicyText(text[pos:start]))
        end = _close_index(text, start)
        whole = text[start : end + 1]
        body = text[start + 2 : end]
        if body in _ESCAPES:
            parts.append(LiteralText(_ESCAPES[body]))
        else:
            key, comma, rest = body.partition(",")
            key = key.strip()
            if not _KEY.fullmatch(key):
                raise VariableSyntaxError(f"policy variable {whole} does not name a condition key")
            default = _parse_default(rest, whole) if comma else None
            parts.append(VariableRef(key.lower(), default))
        pos = end + 1
    if pos < len(text):
        parts.append(PolicyText(text[pos:]))
    return tuple(parts)


def has_variables(template: Template) -> bool:
    return any(isinstance(part, VariableRef) for part in template)


def render_chunks(template: Template, context: Context) -> tuple[Chunk, ...] | None:
    """Substitute variables; ``None`` if one cannot be resolved (the entry then matches nothing)."""
    chunks: list[Chunk] = []
    for part in template:
        if isinstance(part, PolicyText):
            chunks.append((part.text, True))
        elif isinstance(part, LiteralText):
            chunks.append((part.text, False))
        else:
            value = part.resolve(context)
            if value is None:
                return None
            chunks.append((value, False))
    return tuple(chunks)


def render_text(template: Template, context: Context) -> str | None:
    chunks = render_chunks(template, context)
    return None if chunks is None else "".join(text for text, _ in chunks)


def template_text(template: Template) -> str:
    """The template's text with variables left as ``${key}``; for messages and static checks."""
    out: list[str] = []
    for part in template:
        if isinstance(part, VariableRef):
            out.append("${" + part.key + "}")
        else:
            out.append(part.text)
    return "".join(out)
