"""Policy variables: ``${aws:username}``, ``${aws:PrincipalTag/team, 'none'}``, ``${*}``, ``${?}``, ``${$}``.

A policy string becomes a *template* of parts. Substitution is a single pass and its result is
literal text: a user name containing ``*`` cannot widen a pattern. Variables exist only in policies
with ``"Version": "2012-10-17"``; otherwise ``${...}`` is ordinary text.

The rules, as AWS documents them (IAM User Guide, "IAM policy elements: Variables and tags",
reference_policies_variables, and the IAM Access Analyzer policy check reference,
access-analyzer-reference-policy-checks; ``tests/unit/iam/test_variables.py`` quotes each sentence):

- "Key names are case-insensitive. For example, ``aws:CurrentTime`` is equivalent to
  ``AWS:currenttime``": ``${AWS:UserName}`` is ``${aws:username}``. A default value is text, kept
  exactly as written.
- "You can't use a multivalued condition key as a variable": such a key has no value here.
- A key without a value in the request makes the variable "effectively null": a Resource or
  NotResource entry using it "will not match any resource", a positive string condition value does
  not match, and a negated one (StringNotEquals, StringNotLike) does (``render_chunks`` returns
  None; the callers in ``policy`` and ``conditions`` apply that).
- "Although you can include a space when you specify a default [value], you cannot include a
  space in the variable name" ("Unsupported space in variable"): ``${ aws:username }`` is refused,
  ``${aws:username, 'a b'}`` is not. The default is separated by "a comma and space (``, ``)" and
  must "begin and end with a single quote" ("Missing quote in variable"); ``${}`` is an "Empty
  variable" and a ``${`` without ``}`` a "Missing brace in variable".
- Not documented by AWS, our choice: ``''`` in a default stands for one ``'`` (so a default can
  hold a quote), and the space after the comma may be left out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from openssm.errors import OpenSSMError
from openssm.iam.glob import Chunk

Context = Mapping[str, Sequence[str]]  # condition keys lowercased


# Keys AWS documents as multivalued (lowercased). "You can't use a multivalued condition key as a
# variable": such a variable has no value, however many values the request has.
MULTIVALUED_KEYS = frozenset(
    {"aws:tagkeys", "aws:calledvia", "aws:principalservicenameslist", "aws:principalorgpaths"}
)


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
        # Multivalued keys cannot be used as variables (nor can a key that came with several values).
        if values is not None and len(values) == 1 and self.key not in MULTIVALUED_KEYS:
            return values[0]
        return self.default


Part = PolicyText | LiteralText | VariableRef
Template = tuple[Part, ...]

_ESCAPES = {"*": "*", "?": "?", "$": "$"}
_KEY = re.compile(r"[A-Za-z0-9_.:/\-@+=,]+")


def _parse_default(rest: str, whole: str) -> str:
    """``'text'`` with ``''`` for one quote; spaces may come before the opening quote only."""
    rest = rest.lstrip(" ")
    if len(rest) < 2 or rest[0] != "'" or rest[-1] != "'":
        raise VariableSyntaxError(
            f"Missing quote in variable {whole}: the policy variable default value must begin and end "
            "with a single quote"
        )
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
    raise VariableSyntaxError(
        f"Missing brace in variable in {text!r}: the policy variable is missing a closing curly brace"
    )


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
            if not key.strip():
                raise VariableSyntaxError(f"Empty variable {whole}: provide a condition key within ${{ }}")
            if key != key.strip() or any(char.isspace() for char in key):
                raise VariableSyntaxError(
                    f"Unsupported space in variable {whole}: a space is not supported in the variable name"
                )
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
