"""KMS ciphertext blobs: they open only with their key and exactly their encryption context, in any
order, and any other byte string is refused as InvalidCiphertext (never another error)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol import kms_blob

KEY = bytes(range(32))
contexts = st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=20), max_size=4)


@given(plaintext=st.binary(min_size=1, max_size=256), context=contexts)
def test_a_blob_opens_with_its_context_in_any_order(plaintext: bytes, context: dict[str, str]) -> None:
    blob = kms_blob.seal("1234abcd-0000-0000-0000-000000000000", KEY, plaintext, context)
    header = kms_blob.parse(blob)
    assert header.key_id == "1234abcd-0000-0000-0000-000000000000"
    assert kms_blob.open_blob(header, KEY, dict(reversed(list(context.items())))) == plaintext
    with pytest.raises(kms_blob.InvalidCiphertext):
        kms_blob.open_blob(header, KEY, {**context, "other": "value"})
    with pytest.raises(kms_blob.InvalidCiphertext):
        kms_blob.open_blob(header, bytes(32), context)


@given(blob=st.binary(max_size=200), position=st.integers(min_value=0))
def test_altered_or_foreign_bytes_are_invalid_ciphertext(blob: bytes, position: int) -> None:
    sealed = bytearray(kms_blob.seal("k", KEY, b"data key", {"a": "b"}))
    sealed[position % len(sealed)] ^= 0x40
    for candidate in (bytes(sealed), blob):
        with pytest.raises(kms_blob.InvalidCiphertext):
            kms_blob.open_blob(kms_blob.parse(candidate), KEY, {"a": "b"})
