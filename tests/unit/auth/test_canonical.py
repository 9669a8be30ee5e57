"""Canonical request pieces: path, query and header rules of SigV4 for non-S3 services."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from botocore.utils import normalize_url_path
from hypothesis import given
from hypothesis import strategies as st

from openssm.auth import canonical
from openssm.auth.sigv4 import SigV4Error

from .helpers import wire_paths


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("", "/"),
        ("/v1/data-channel/tester-0a1b2c3d4e5f60718", "/v1/data-channel/tester-0a1b2c3d4e5f60718"),
        ("/a/./b/../c", "/a/c"),
        ("/a//b/", "/a/b/"),
        ("/..", "/"),
        ("/a/b/..", "/a"),
        # already-encoded text is encoded again: '%' -> '%25'
        ("/example%20space/", "/example%2520space/"),
        ("/a%2Fb", "/a%252Fb"),
        # unencoded sub-delimiters (as aws-sdk-go sends them) are encoded once
        ("/a:b!c", "/a%3Ab%21c"),
        ("/~user", "/~user"),
        ("/ሴ", "/%E1%88%B4"),
    ],
)
def test_canonical_uri(raw: str, expected: str) -> None:
    assert canonical.canonical_uri(raw) == expected


@given(wire_paths())
def test_canonical_uri_agrees_with_botocore(path: str) -> None:
    assert canonical.canonical_uri(path) == quote(normalize_url_path(path), safe="/~")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("role=publish_subscribe", "role=publish_subscribe"),
        ("role=subscribe&stream=input", "role=subscribe&stream=input"),
        ("b=2&a=1", "a=1&b=2"),
        # sorted by key, then by value for repeated keys
        ("a=z&a=b&A=c", "A=c&a=b&a=z"),
        # RFC 3986: space as %20, '+' is a literal plus, '~' never escaped, hex upper-case
        ("q=a b&p=x+y&t=%7e&u=%2f", "p=x%2By&q=a%20b&t=~&u=%2F"),
        # key without '=' gets an empty value; empty parts are dropped
        ("flag&&x=", "flag=&x="),
        ("k=%E1%88%B4", "k=%E1%88%B4"),
        ("k=ሴ", "k=%E1%88%B4"),
        # an invalid escape is a literal '%'
        ("k=%zz", "k=%25zz"),
        # decoding to bytes keeps invalid UTF-8 distinct instead of folding it to U+FFFD
        ("k=%FF", "k=%FF"),
    ],
)
def test_canonical_query(raw: str, expected: str) -> None:
    assert canonical.canonical_query(raw) == expected


def test_canonical_query_drops_only_the_presigned_signature() -> None:
    raw = "X-Amz-Signature=abc&role=x&X-Amz-Date=20261128T163213Z"
    assert canonical.canonical_query(raw, drop_key="X-Amz-Signature") == "X-Amz-Date=20261128T163213Z&role=x"
    assert "X-Amz-Signature=abc" in canonical.canonical_query(raw)


@given(st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=6))
def test_canonical_query_is_sorted_rfc3986(pairs: list[tuple[str, str]]) -> None:
    raw = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    expected = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    assert canonical.canonical_query(raw) == "&".join(f"{k}={v}" for k, v in expected)


def test_canonical_headers_trim_collapse_and_join_repeats() -> None:
    headers = [
        ("Host", "example.test"),
        ("X-Amz-Date", "20261128T163213Z"),
        ("My-Header1", "  a   b \t c  "),
        ("my-header1", "second"),
        ("Unsigned", "ignored"),
    ]
    lines = canonical.canonical_headers(headers, ["host", "my-header1", "x-amz-date"])
    assert lines == "host:example.test\nmy-header1:a b c,second\nx-amz-date:20261128T163213Z\n"


def test_canonical_headers_refuse_a_missing_signed_header() -> None:
    with pytest.raises(SigV4Error) as info:
        canonical.canonical_headers([("Host", "h")], ["host", "x-amz-target"])
    assert "x-amz-target" in info.value.message
    assert info.value.code == "InvalidSignatureException"


def test_signing_key_matches_aws_documented_example() -> None:
    # The derived key of AWS's documentation example (secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
    # 20120215, us-east-1, iam), as published in the SigV4 guide.
    key = canonical.signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_text_that_is_not_utf8_is_refused_cleanly() -> None:
    with pytest.raises(SigV4Error):
        canonical.canonical_uri("/\ud800")
