"""What fuzzing (and reading the code the fuzzers pointed at) found. An open finding is a strict
xfail that fails today with the input that shows it, and starts passing (so fails as an xfail) once
fixed; then the marker goes, with the matching tolerance in the fuzz target (such as
``target_api.KNOWN_500``), and the test stays as the regression test of the fix.

Found and fixed elsewhere: SigV4's compare of a non-ASCII X-Amz-Content-Sha256
(``tests/unit/auth/test_sigv4_errors.py``).
"""

from __future__ import annotations

import base64
import gc
import importlib
import json
import pathlib
from collections.abc import Iterator

import pytest

from openssm.auth.rsa_identity import generate_key_pair
from openssm.protocol import documents, messages
from openssm.security.login_secrets import totp_step
from tests.fuzz.target_api import ApiFuzzer

RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1


def test_interactive_shell_content_with_a_lone_surrogate_is_a_message_error() -> None:
    """Target ``messages`` (fixed): a gateway's interactive_shell whose Content string holds the JSON
    escape of a lone surrogate. ``messages.codec.load`` measured the text with
    ``str.encode('utf-8')``, which raised UnicodeEncodeError (not the module's MessageError)."""
    # The outer JSON carries the surrogate as an escape; the Content text then holds the character.
    payload = json.dumps({"Content": '"' + chr(0xD800) + '"', "TaskId": "t"}).encode()
    assert b"\\ud800" in payload
    with pytest.raises(messages.MessageError):
        messages.parse_interactive_shell(payload)


@pytest.mark.parametrize("session_type", [{"a": 1}, ["Standard_Stream"]])
def test_document_with_an_object_as_session_type_is_a_document_error(session_type: object) -> None:
    """Target ``documents`` (and, through CreateDocument, an HTTP 500 on the API): ``validate_document``
    tested ``sessionType in SESSION_TYPES``, a frozenset, and a dict or list is unhashable."""
    content = json.dumps({"schemaVersion": "1.0", "description": "x", "sessionType": session_type})
    with pytest.raises(documents.DocumentError):
        documents.parse_document(content)


def test_document_with_a_huge_repetition_in_allowed_pattern_is_a_document_error() -> None:
    """Target ``documents``: ``allowedPattern`` was compiled with ``re``, which raises OverflowError
    (not ``re.error``) for a repetition count it cannot hold; CreateDocument then answered 500. (The
    pattern's compiling and matching are now bounded too: ``test_protocol_documents.py``.)"""
    content = json.dumps(
        {
            "schemaVersion": "1.0",
            "description": "x",
            "sessionType": "Port",
            "parameters": {"p": {"type": "String", "allowedPattern": "^a{99999999999999999999}$"}},
        }
    )
    with pytest.raises(documents.DocumentError):
        documents.parse_document(content)


def test_create_document_with_an_object_as_session_type_is_a_client_error(api: ApiFuzzer) -> None:
    content = json.dumps({"schemaVersion": "1.0", "description": "x", "sessionType": {"a": 1}})
    body = {"Name": "fuzz-finding", "Content": content, "DocumentType": "Session", "DocumentFormat": "JSON"}
    assert 400 <= _status(api, "AmazonSSM.CreateDocument", body) < 500


def test_totp_code_of_non_ascii_digits_is_not_valid() -> None:
    """Read while fuzzing the sign-in inputs: ``totp_step`` accepted any code of six characters
    that ``str.isdigit`` calls digits ("١٢٣٤٥٦", Arabic-Indic), then ``hmac.compare_digest``
    refused to compare non-ASCII text: a console sign-in with such a code was an HTTP 500 (the API's
    EnableMFADevice checks ``[0-9]{6}`` first and is not affected)."""
    assert totp_step(b"0" * 20, "١٢٣٤٥٦", 1_800_000_000.0) is None


@pytest.fixture(scope="module")
def api() -> Iterator[ApiFuzzer]:
    fuzzer = ApiFuzzer()
    try:
        yield fuzzer
    finally:
        fuzzer.close()


def _status(api: ApiFuzzer, target: str, body: dict[str, str] | bytes) -> int:
    status, _ = api.loop.run_until_complete(api.json(target, body))
    return status


def test_register_with_a_key_of_an_unknown_algorithm_is_a_client_error(api: ApiFuzzer) -> None:
    """Target ``api_json``: RegisterManagedInstance (unauthenticated) with a DER public key whose
    algorithm OID cryptography does not know. ``_checked_public_key`` caught ValueError only;
    cryptography raises UnsupportedAlgorithm, and the server answered 500."""
    _, public = generate_key_pair()
    der = bytearray(public)
    at = der.find(RSA_ENCRYPTION_OID)
    der[at + 3] ^= 0x10  # 1.2.840.1134… → an OID no library knows
    activation = json.loads(
        api.loop.run_until_complete(api.json("AmazonSSM.CreateActivation", {"IamRole": "OpenSSMNodeRole"}))[1]
    )
    body = {
        "ActivationCode": activation["ActivationCode"],
        "ActivationId": activation["ActivationId"],
        "Fingerprint": "fingerprint",
        "PublicKey": base64.b64encode(bytes(der)).decode(),
        "PublicKeyType": "Rsa",
    }
    assert 400 <= _status(api, "AmazonSSM.RegisterManagedInstance", body) < 500


def test_role_token_request_with_a_lone_surrogate_fingerprint_is_a_client_error(api: ApiFuzzer) -> None:
    """Read while fuzzing ``api_json``: RequestManagedInstanceRoleToken (signed by a registered
    node) with ``"Fingerprint": "\\ud800"``; ``fingerprint.encode()`` raised before the compare.
    Every JSON body is now refused with a lone surrogate in any string, before any operation."""
    status, body = api.loop.run_until_complete(
        api.json("AmazonSSM.RequestManagedInstanceRoleToken", b'{"Fingerprint": "\\ud800"}')
    )
    assert status == 400 and b"ValidationException" in body and b"lone surrogate" in body


def test_a_surrogate_pair_escaped_in_json_is_one_character_and_accepted(api: ApiFuzzer) -> None:
    """The pair for U+1F600 is text like any other: the operation itself answers (a fingerprint
    that is not the node's), not the body check."""
    status, body = api.loop.run_until_complete(
        api.json("AmazonSSM.RequestManagedInstanceRoleToken", b'{"Fingerprint": "\\ud83d\\ude00"}')
    )
    assert status == 400 and b"InvalidInstanceId" in body


PROBE = '''
class Result:
    """What a comparison gives: a new object each time, as SQLAlchemy's ``column == value`` does."""


class Operand:
    def __eq__(self, other):
        return Result()


def compare(a, b):
    return a == b
'''


@pytest.mark.xfail(strict=True, reason="atheris 3.0.0 keeps a reference to each traced comparison's result")
def test_atheris_instrumented_comparisons_free_their_results(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fuzz run (a memory finding in atheris, not OpenSSM): an api_json process grew about
    0.9 KB an input (1 GB per 10^6) because atheris' comparison hook leaks the result of every ``==``
    it traces, and the store's SQLAlchemy conditions are new objects (DESIGN.md, Fuzzing). The
    server without instrumentation stays flat. When atheris is fixed, this passes: drop the marker
    and the paragraph's RSS caveat."""
    import atheris  # type: ignore[import-untyped]

    (tmp_path / "atheris_compare_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with atheris.instrument_imports(include=["atheris_compare_probe"]):
        probe = importlib.import_module("atheris_compare_probe")
    operand = probe.Operand()
    for _ in range(1000):
        probe.compare(operand, 1)
    gc.collect()
    assert sum(1 for o in gc.get_objects() if isinstance(o, probe.Result)) == 0
