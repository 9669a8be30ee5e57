"""The fuzz targets: each is a module with ``setup() -> one_input(data: bytes) -> None``.

``one_input`` catches exactly the errors the code under test documents for bad input; anything else
it lets through, and atheris reports it as a crash. ``sources`` are the modules whose lines the
runner counts when it measures line coverage of a corpus.
"""

from __future__ import annotations

import dataclasses
import pathlib

FUZZ_DIR = pathlib.Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    module: str
    description: str
    sources: tuple[str, ...]
    max_len: int = 4096  # libFuzzer -max_len: inputs longer than this are not generated

    @property
    def corpus(self) -> pathlib.Path:
        return CORPUS_DIR / self.name


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "frames",
            "tests.fuzz.target_frames",
            "Session Manager frame codec: frames.decode (digest checks, owned views), re-encode, acks",
            ("openssm/protocol/frames.py",),
        ),
        Target(
            "smux",
            "tests.fuzz.target_smux",
            "smux v1/v2: SmuxSession.receive in random splits, reads and writes, against SmuxScanner",
            ("openssm/protocol/smux.py", "openssm/protocol/smux_scan.py"),
        ),
        Target(
            "websocket",
            "tests.fuzz.target_websocket",
            "RFC 6455 framing: FrameReader (masked and not, split reads, small limits), close payloads",
            ("openssm/protocol/websocket.py",),
        ),
        Target(
            "sigv4",
            "tests.fuzz.target_sigv4",
            "SigV4: parse_request and verify_hmac/verify_rsa of raw HTTP requests, canonicalisation",
            ("openssm/auth/sigv4.py", "openssm/auth/canonical.py"),
        ),
        Target(
            "iam_policy",
            "tests.fuzz.target_iam_policy",
            "IAM policy text: parse_policy (identity and trust), statement_positions, evaluation",
            (
                "openssm/iam/policy.py",
                "openssm/iam/variables.py",
                "openssm/iam/conditions.py",
                "openssm/iam/arn.py",
                "openssm/iam/glob.py",
            ),
        ),
        Target(
            "iam_evaluate",
            "tests.fuzz.target_iam_evaluate",
            "IAM evaluation: a policy and a request (action, resource, context) from the input",
            (
                "openssm/iam/evaluate.py",
                "openssm/iam/policy.py",
                "openssm/iam/conditions.py",
                "openssm/iam/variables.py",
                "openssm/iam/arn.py",
                "openssm/iam/glob.py",
            ),
        ),
        Target(
            "documents",
            "tests.fuzz.target_documents",
            "SSM documents: JSON/YAML parse and validation, parameters, {{ }} resolution, preferences, shorthand",
            ("openssm/protocol/documents.py",),
        ),
        Target(
            "messages",
            "tests.fuzz.target_messages",
            "JSON messages of the channels: every parse_* of openssm.protocol.messages",
            ("openssm/protocol/messages",),
        ),
        Target(
            "api_json",
            "tests.fuzz.target_api",
            "API: signed JSON 1.1 bodies for every registered X-Amz-Target, through the aiohttp app",
            ("openssm/api/",),
            max_len=8192,
        ),
        Target(
            "api_query",
            "tests.fuzz.target_api",
            "API: signed Query bodies (IAM, STS) for every registered Action, through the aiohttp app",
            ("openssm/api/",),
            max_len=8192,
        ),
    )
}
