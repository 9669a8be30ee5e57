"""What every IAM handler shares: registration (with IAM's error shapes), authorisation, and the
users, groups and roles they act on.

Every action is authorised as ``iam:<Action>`` on the ARN of the entity it touches, before the
entity is looked up (so an unauthorised caller cannot probe which names exist).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Generic, Protocol, TypeVar

from openssm.api.errors import ApiError, from_store
from openssm.api.iam.params import entity_name, holder_name, paginate, path_prefix
from openssm.api.registry import query_action
from openssm.api.request import ApiRequest
from openssm.iam import MalformedPolicyDocument
from openssm.iam.arn import group_arn, role_arn, user_arn
from openssm.security.errors import AccessDenied
from openssm.store.errors import StoreError
from openssm.store.iam import groups, holders, roles, users
from openssm.store.iam.holders import HolderType
from openssm.store.rows import Db

IAM_XMLNS: Final = "https://iam.amazonaws.com/doc/2010-05-08/"

QueryHandler = Callable[[ApiRequest, Mapping[str, str]], Awaitable[Any]]


def iam_action(action: str) -> Callable[[QueryHandler], QueryHandler]:
    """Register an IAM handler; store, policy and authorisation failures come out in IAM's words."""

    def register(handler: QueryHandler) -> QueryHandler:
        @functools.wraps(handler)
        async def wrapped(request: ApiRequest, form: Mapping[str, str]) -> Any:
            try:
                return await handler(request, form)
            except StoreError as exc:
                raise from_store(exc) from None
            except MalformedPolicyDocument as exc:
                raise ApiError("MalformedPolicyDocument", str(exc)) from None
            except AccessDenied as exc:
                raise ApiError("AccessDenied", exc.message, 403) from None

        query_action("iam", action, xmlns=IAM_XMLNS)(wrapped)
        return handler

    return register


async def authorize(
    request: ApiRequest, action: str, resource: str, context: Mapping[str, Sequence[str]] | None = None
) -> None:
    await request.authorize(f"iam:{action}", [resource], context or {})


class Entity(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def arn(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def created_at(self) -> dt.datetime: ...


RowT = TypeVar("RowT", bound=Entity)


@dataclasses.dataclass(frozen=True, slots=True)
class Holder(Generic[RowT]):
    """Users, groups or roles, as handlers authorise against and look them up."""

    type: HolderType
    find: Callable[[Db, str], Awaitable[RowT | None]]
    list_by_path: Callable[[Db, str], Awaitable[list[RowT]]]
    delete_named: Callable[[Db, str], Awaitable[None]]
    default_arn: Callable[[str, str], str]  # (account, name): its ARN with the path "/"

    @property
    def word(self) -> str:
        return self.type.capitalize()

    async def resource(self, request: ApiRequest, name: str) -> tuple[str, RowT | None]:
        """Its ARN (with its real path when it exists) and its row."""
        row = await self.find(request.services.engine, name)
        return (row.arn if row else self.default_arn(request.account, name)), row

    async def authorize(
        self, request: ApiRequest, action: str, name: str, context: Mapping[str, Sequence[str]] | None = None
    ) -> RowT | None:
        arn, row = await self.resource(request, name)
        await authorize(request, action, arn, context)
        return row

    async def existing(self, request: ApiRequest, action: str, name: str) -> RowT:
        """Authorised, then looked up: NoSuchEntity if it does not exist."""
        row = await self.authorize(request, action, name)
        if row is None:
            raise holders.not_found(self.type, name)
        return row

    def register_list_and_delete(self, shape: Callable[[RowT], dict[str, Any]]) -> None:
        """``List<Users|Groups|Roles>`` (those under ``PathPrefix``, a page of their shapes) and
        ``Delete<User|Group|Role>``, which are alike for all three."""
        word = self.word

        @iam_action(f"List{word}s")
        async def listing(request: ApiRequest, form: Mapping[str, str]) -> Any:
            action, prefix = f"List{word}s", path_prefix(form)
            await authorize(request, action, "*")
            rows = await self.list_by_path(request.services.engine, prefix)
            return paginate(form, [shape(row) for row in rows], f"{action}{prefix}", f"{word}s")

        @iam_action(f"Delete{word}")
        async def delete(request: ApiRequest, form: Mapping[str, str]) -> Any:
            name = holder_name(form, self.type)
            await self.authorize(request, f"Delete{word}", name)
            await self.delete_named(request.services.engine, name)


USERS: Final = Holder("user", users.get, users.list_by_path, users.delete, user_arn)
GROUPS: Final = Holder("group", groups.get, groups.list_by_path, groups.delete, group_arn)
ROLES: Final = Holder("role", roles.get, roles.list_by_path, roles.delete, role_arn)
HOLDERS: Final[dict[HolderType, Holder[Any]]] = {"user": USERS, "group": GROUPS, "role": ROLES}


async def authorized_user(request: ApiRequest, form: Mapping[str, str], action: str) -> str:
    """``UserName`` (the caller without it), authorised for ``action``."""
    name = caller_user_name(request, form)
    await USERS.authorize(request, action, name)
    return name


def caller_user_name(request: ApiRequest, form: Mapping[str, str]) -> str:
    """``UserName`` if given, else the calling user (AWS: implied by the signing key)."""
    name = entity_name(form, "UserName", "user", optional=True)
    if name is not None:
        return name
    principal = request.require_identity().principal
    if principal.type != "User" or not principal.username:
        raise ApiError("ValidationError", "Must specify userName when calling with non-User credentials")
    return principal.username


def entity_shape(row: Entity, word: str, unique_id: str) -> dict[str, Any]:
    """What the shapes of users, groups and roles begin with."""
    return {
        "Path": row.path,
        f"{word}Name": row.name,
        f"{word}Id": unique_id,
        "Arn": row.arn,
        "CreateDate": row.created_at,
    }
