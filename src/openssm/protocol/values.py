"""Immutable value types without ``dataclasses``' cost at import.

A frozen, slotted dataclass costs about 3.5 M instructions (some 1.5 ms) to define: ``dataclasses``
writes the source of ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and
``__delattr__`` and compiles each, then builds the class a second time for its slots. The modules
every client loads on its way to the first prompt defined dozens of them. A :class:`Value`
subclass costs about as much as any class: it names its fields in ``__slots__`` and writes its
``__init__`` (setting them with :func:`object.__setattr__`); equality, hashing, ``repr`` and the
refusal to be changed come from here, and behave as a frozen dataclass's do.
"""

from __future__ import annotations

from openssm.errors import OpenSSMError

TYPE_CHECKING = False  # typing only for the checker: this module is on the client's way to its prompt
if TYPE_CHECKING:
    from typing import Any, ClassVar


class FrozenError(OpenSSMError, AttributeError):
    """An attempt to change a :class:`Value` (as ``dataclasses.FrozenInstanceError``, an AttributeError)."""


class Value:
    """Base of an immutable value. Its fields are its ``__slots__`` (its own and its bases'), in the
    order of its ``__init__``'s parameters, which are named after them; that order is the order
    of comparison and of ``repr``, as a dataclass's field order."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        assert "__slots__" in vars(cls), f"{cls.__name__} must name its fields in __slots__"
        code = getattr(cls.__init__, "__code__", None)  # none: object's, no fields
        cls._fields = () if code is None else code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
        slots = {name for klass in cls.__mro__ for name in vars(klass).get("__slots__", ())}
        assert set(cls._fields) == slots, f"{cls.__name__}.__init__ must take each of its slots"
        setattr(cls, "__match_args__", cls._fields)  # noqa: B010  (mypy: no class attribute to assign)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Value)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{self.__class__.__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"cannot delete field {name!r}")

    def __getstate__(self) -> tuple[Any, ...]:
        return self._values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self._fields, state, strict=True):
            object.__setattr__(self, name, value)
