"""Store refusals become AWS's error shapes in one place (``openssm.api.errors.from_store``)."""

from __future__ import annotations

import pytest

from openssm.api.errors import STORE_ERRORS, from_store
from openssm.store import errors


def test_every_store_refusal_has_an_aws_shape() -> None:
    refusals = {
        cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.StoreError)
    }
    assert refusals - {errors.StoreError} == set(STORE_ERRORS)


@pytest.mark.parametrize(
    ("refusal", "code", "status"),
    [
        (errors.NoSuchEntity, "NoSuchEntity", 404),
        (errors.EntityAlreadyExists, "EntityAlreadyExists", 409),
        (errors.DeleteConflict, "DeleteConflict", 409),
        (errors.LimitExceeded, "LimitExceeded", 409),
        (errors.NotModifiable, "InvalidInput", 400),
    ],
)
def test_store_refusals_keep_their_message_and_get_iams_code_and_status(
    refusal: type[errors.StoreError], code: str, status: int
) -> None:
    error = from_store(refusal("The user with name alice cannot be found."))
    assert (error.code, error.message, error.status) == (
        code,
        "The user with name alice cannot be found.",
        status,
    )
