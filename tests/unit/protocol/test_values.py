"""``protocol.values.Value``: behaves as a frozen dataclass would (equality, hash, repr, no
assignment, pickling), without ``dataclasses``' code generation at import."""

from __future__ import annotations

import copy
import pickle

import pytest

from openssm.protocol.values import FrozenError, Value


class Point(Value):
    __slots__ = ("x", "y")
    x: int
    y: int

    def __init__(self, y: int, x: int = 0) -> None:  # the fields' order is the parameters'
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "x", x)


class Labelled(Point):
    __slots__ = ("label",)
    label: str

    def __init__(self, y: int, x: int, label: str) -> None:
        super().__init__(y, x)
        object.__setattr__(self, "label", label)


class Empty(Value):
    __slots__ = ()


def test_fields_follow_the_init_parameters() -> None:
    assert Point._fields == ("y", "x")
    assert Labelled._fields == ("y", "x", "label")
    assert Empty._fields == ()
    assert Point.__match_args__ == ("y", "x")  # type: ignore[attr-defined]


def test_equality_and_hash_are_by_class_and_fields() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(2, 1)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert Labelled(1, 2, "a") != Point(1, 2)  # another class is never equal, as dataclasses
    assert Point(1, 2) != (1, 2)
    assert Empty() == Empty()
    assert len({Point(1, 2), Point(1, 2), Point(3, 4)}) == 2


def test_repr_names_the_fields_in_order() -> None:
    assert repr(Labelled(1, 2, "a")) == "Labelled(y=1, x=2, label='a')"
    assert repr(Empty()) == "Empty()"


def test_a_value_cannot_be_changed() -> None:
    point = Point(1)
    with pytest.raises(FrozenError):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):  # FrozenError is one, as dataclasses.FrozenInstanceError
        del point.y  # type: ignore[misc]
    with pytest.raises(AttributeError):
        point.z = 1  # type: ignore[attr-defined]
    assert point == Point(1, 0)


def test_pickle_and_copy_keep_the_fields() -> None:
    value = Labelled(1, 2, "a")
    assert pickle.loads(pickle.dumps(value)) == value
    assert copy.copy(value) == value
    assert copy.deepcopy(value) == value


def test_match_by_position() -> None:
    match Point(7, 8):
        case Point(y, x):  # type: ignore[misc]  # mypy cannot see __match_args__, set at run time
            assert (y, x) == (7, 8)
        case _:
            pytest.fail("no match")


def test_every_slot_must_be_an_init_parameter() -> None:
    with pytest.raises(AssertionError, match="must take each of its slots"):

        class Missing(Value):
            __slots__ = ("a", "b")

            def __init__(self, a: int) -> None:
                object.__setattr__(self, "a", a)
