from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.api import validation
from openssm.api.errors import ApiError
from openssm.api.pagination import page
from openssm.api.query_xml import render_error, render_response


def _message(body: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ApiError) as excinfo:
        validation.string(body, "Target", **kwargs)
    assert excinfo.value.code == "ValidationException"
    return excinfo.value.message


def test_string_rules_name_the_member() -> None:
    assert "'Target'" in _message({}, required=True) and "null" in _message({}, required=True)
    assert "string" in _message({"Target": 5})
    assert "length less than or equal to 3" in _message({"Target": "abcd"}, max_len=3)
    assert "pattern" in _message({"Target": "x"}, pattern=r"^i-.*$")
    assert "enum" in _message({"Target": "x"}, allowed=("Active", "History"))
    assert validation.string({"Target": "ok"}, "Target", required=True, max_len=3) == "ok"
    assert validation.string({}, "Target") is None


def test_integer_and_timestamp() -> None:
    assert validation.integer({"MaxResults": 5}, "MaxResults", minimum=5, maximum=50) == 5
    for bad in (True, "5", 4, 51, 1.5):
        with pytest.raises(ApiError):
            validation.integer({"MaxResults": bad}, "MaxResults", minimum=5, maximum=50)
    assert validation.timestamp({"T": 0}, "T") == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ApiError):
        validation.timestamp({"T": "yesterday"}, "T")
    with pytest.raises(ApiError):
        validation.timestamp({"T": 1e30}, "T")


def test_string_list_map_and_tags() -> None:
    assert validation.string_list_map({"P": {"a": ["1", "2"]}}, "P") == {"a": ["1", "2"]}
    with pytest.raises(ApiError, match=r"P\.a"):
        validation.string_list_map({"P": {"a": "1"}}, "P")
    assert validation.tags({"Tags": [{"Key": "k", "Value": "v"}]}) == {"k": "v"}
    with pytest.raises(ApiError, match="Key"):
        validation.tags({"Tags": [{"Value": "v"}]})


@given(st.integers(min_value=0, max_value=60), st.integers(min_value=1, max_value=7))
def test_paging_visits_every_item_once(count: int, size: int) -> None:
    items = list(range(count))
    seen: list[int] = []
    token: str | None = None
    while True:
        chunk, token = page(items, token, size, "scope")
        assert len(chunk) <= size
        seen.extend(chunk)
        if token is None:
            break
    assert seen == items


def test_foreign_or_garbage_tokens_are_refused() -> None:
    _, token = page(list(range(10)), None, 2, "a")
    assert token is not None
    deeply_nested = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    for bad in (token, "garbage", "e30=", "!!", deeply_nested):
        with pytest.raises(ApiError) as excinfo:
            page(list(range(10)), bad, 2, "b")
        assert excinfo.value.code == "InvalidNextToken"


def test_query_xml_rendering() -> None:
    text = render_response(
        "ListUsers",
        "https://iam.amazonaws.com/doc/2010-05-08/",
        {
            "Users": [{"UserName": "a<b", "CreateDate": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)}],
            "IsTruncated": False,
            "Marker": None,
        },
        "rid",
    )
    assert text == (
        '<ListUsersResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListUsersResult>'
        "<Users><member><UserName>a&lt;b</UserName><CreateDate>2026-01-02T03:04:05Z</CreateDate></member></Users>"
        "<IsTruncated>false</IsTruncated></ListUsersResult>"
        "<ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></ListUsersResponse>"
    )
    assert "<Type>Receiver</Type>" in render_error("InternalFailure", "x", 500, "r")
    assert "<Code>NoSuchEntity</Code>" in render_error("NoSuchEntity", "x", 404, "r")
