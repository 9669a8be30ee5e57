"""Fuzz target ``documents``: SSM documents and StartSession parameters as an API caller sends them.

Input: a mode byte (``J`` JSON, ``Y`` YAML, anything else: CLI ``--parameters`` text alone), then
the document text, ``\\x00``, and the parameters in the CLI's JSON or shorthand form. A document
that parses is checked for placeholders and read as session preferences; the parameters are
validated against it and substituted (``resolve``), as StartSession and the agent do.

Checks: only DocumentError for bad input. (Found here and fixed: a ``sessionType`` object or list
raised TypeError, an ``allowedPattern`` repetition too large for ``re`` raised OverflowError;
``tests/fuzz/test_fuzz_findings.py`` keeps both.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import yaml

from openssm.protocol import documents
from openssm.protocol.documents import DocumentError


def one_input(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    document_part, _, parameters_part = body.partition(b"\x00")
    parameters_text = parameters_part.decode("utf-8", "surrogateescape")
    if mode not in (b"J", b"Y"):
        try:
            documents.parse_cli_parameters(body.decode("utf-8", "surrogateescape"))
        except DocumentError:
            pass
        return
    try:
        document = documents.parse_document(document_part, "JSON" if mode == b"J" else "YAML")
    except DocumentError:
        return
    documents.placeholders(document)
    try:
        documents.preferences_from_document(document)
    except DocumentError:
        pass
    try:
        parameters = documents.parse_cli_parameters(parameters_text) if parameters_text else {}
        validated = documents.validate_parameters(document, parameters)
    except DocumentError:
        return
    documents.resolve(document, documents.agent_parameters(validated))


def setup() -> Callable[[bytes], None]:
    return one_input


def seeds() -> Iterator[bytes]:
    parameters = [
        "",
        "portNumber=3389, localPortNumber=13389",
        'host=["db.internal"],portNumber=5432',
        '{"portNumber":["22"]}',
        "commands='echo a,b',\"x\"=[1, 2]",
    ]
    for index, document in enumerate(documents.builtin_documents().values()):
        params = parameters[index % len(parameters)].encode()
        yield b"J" + json.dumps(document).encode() + b"\x00" + params
        yield b"Y" + yaml.safe_dump(document).encode() + b"\x00" + params
    for text in parameters:
        yield b"S" + text.encode()
