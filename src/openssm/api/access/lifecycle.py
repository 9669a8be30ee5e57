"""What happens to an access request, wherever it is asked for (the API, the console, the expiry task).

Each step changes the request's status by compare-and-set and, in the same transaction, what goes
with it: the grant's inline policy put on or deleted from the requester, the audit trail's service
events, and the webhook's delivery. So a step is all done or not at all, and two nodes (or two
approvers) racing for the same step cannot both take it. Ending the requester's live sessions comes
after the commit, through TerminateSession's own path (``ssm_sessions.end_session``: the bus to the
gateway node that carries each session); a node that dies between the two leaves it to the next
pass of any node's expiry task (``end_sessions_of_recent_ends``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, Final

from openssm.api import session_documents
from openssm.api.access import vocabulary, webhook
from openssm.api.errors import ApiError
from openssm.api.ssm_sessions import end_session
from openssm.api.targets import target_arn
from openssm.api.validation import epoch
from openssm.iam.arn import role_arn, session_arn
from openssm.iam.principal import Principal
from openssm.security import access_grants
from openssm.security.access_grants import Grant
from openssm.services import Services
from openssm.store import access_requests, audit_log, sessions
from openssm.store.access_requests import AccessRequestRow, AccessStatus
from openssm.store.errors import NoSuchEntity
from openssm.store.iam.holders import HolderType
from openssm.store.rows import Db

log = logging.getLogger(__name__)

# A session whose StartSession was authorised just before its grant ended may be written just after
# the grant's sessions were ended: later passes look again at grants that ended this recently.
SECOND_LOOK: Final = dt.timedelta(seconds=30)


@dataclasses.dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a requester's grant policy: the IAM user, or the role of an assumed-role session."""

    type: HolderType
    name: str


def holder_of(principal: Principal) -> Holder:
    if principal.type == "User" and principal.username:
        return Holder("user", principal.username)
    if principal.type == "AssumedRole" and principal.role_name and principal.session_name:
        return Holder("role", principal.role_name)
    raise ApiError("ValidationException", "Only IAM users and role sessions can request access.")


def conflict(row: AccessRequestRow, wanted: str) -> ApiError:
    return ApiError(
        "ConflictException",
        f"Access request {row.request_id} is {row.status}: it cannot be {wanted}.",
        resource=row.target,
    )


async def _wake(services: Services) -> None:
    """Every node's access tasks look again now (expiry times, webhook deliveries)."""
    try:
        await services.bus.publish(vocabulary.ACCESS_CHANNEL, dict(vocabulary.CHANGED))
    except Exception:  # best effort: the tasks look on their own every poll interval anyway
        log.warning("could not wake the access tasks over the bus", exc_info=True)


async def _changed(db: Db, services: Services, request_id: str, *, now: dt.datetime) -> AccessRequestRow:
    """The request as it now is, with its webhook delivery queued in the same transaction."""
    row = await access_requests.get(db, request_id)
    assert row is not None
    await webhook.enqueue(db, services.config.access, row, now=now)
    return row


def _holder_arn(services: Services, row: AccessRequestRow) -> str:
    if row.grant_holder_type == "role":
        return role_arn(services.config.account_id, row.grant_holder_name)
    return row.requester_arn


def _holder_type(row: AccessRequestRow) -> HolderType:
    return "role" if row.grant_holder_type == "role" else "user"


async def _audit_policy_call(
    db: Db, services: Services, row: AccessRequestRow, verb: str, *, now: dt.datetime, detail: dict[str, Any]
) -> None:
    """Audits the grant policy the server put or deleted as IAM names it (``iam:PutUserPolicy``,
    ``iam:DeleteRolePolicy`` …) on the holder's ARN."""
    await audit_log.record_service_event(
        db,
        now=now,
        action=f"iam:{verb}{row.grant_holder_type.capitalize()}Policy",
        resource=_holder_arn(services, row),
        detail={"accessRequestId": row.request_id, **detail},
    )


# -- the steps -------------------------------------------------------------------------------------


async def create(
    services: Services,
    request_id: str,
    principal: Principal,
    *,
    target: str,
    document_name: str,
    duration: dt.timedelta,
    reason: str,
    now: dt.datetime,
) -> AccessRequestRow:
    holder = holder_of(principal)
    async with services.engine.begin() as conn:
        await access_requests.create(
            conn,
            now=now,
            pending_until=now + vocabulary.PENDING_LIFETIME,
            request_id=request_id,
            requester_arn=principal.arn,
            requester_name=principal.friendly_name,
            requester_user_id=principal.user_id,
            grant_holder_type=holder.type,
            grant_holder_name=holder.name,
            target=target,
            document_name=document_name,
            duration_seconds=int(duration.total_seconds()),
            reason=reason,
        )
        row = await _changed(conn, services, request_id, now=now)
    await _wake(services)
    return row


async def _grant(services: Services, row: AccessRequestRow, expires_at: dt.datetime) -> Grant:
    config = services.config
    document = await session_documents.find_or_fail(services.engine, row.document_name, config.account_id)
    return Grant(
        request_id=row.request_id,
        holder_type=_holder_type(row),
        holder_name=row.grant_holder_name,
        requester_name=row.requester_name,
        requester_user_id=row.requester_user_id,
        region=config.region,
        account=config.account_id,
        target=row.target,
        target_arn=target_arn(config.region, config.account_id, row.target),
        document_name=document.name,
        document_arn=document.arn(config.region),
        expires_at=expires_at,
    )


async def decide(
    services: Services,
    row: AccessRequestRow,
    decision: AccessStatus,
    decider: Principal,
    *,
    reason: str | None,
    now: dt.datetime,
) -> AccessRequestRow:
    """Pending → Approved, with the grant's policy on the requester until now + the asked duration;
    or Pending → Denied."""
    grant = None
    if decision == AccessStatus.APPROVED:
        grant = await _grant(services, row, now + dt.timedelta(seconds=row.duration_seconds))
    async with services.engine.begin() as conn:
        decided = await access_requests.decide(
            conn,
            row.request_id,
            decision,
            decider_arn=decider.arn,
            decider_name=decider.friendly_name,
            reason=reason,
            now=now,
            expires_at=grant.expires_at if grant else None,
        )
        if not decided:
            raise conflict(row, str(decision).lower())
        if grant is not None:
            await _put_grant(conn, services, row, grant, decider, now=now)
        changed = await _changed(conn, services, row.request_id, now=now)
    await _wake(services)
    return changed


async def _put_grant(
    db: Db, services: Services, row: AccessRequestRow, grant: Grant, decider: Principal, *, now: dt.datetime
) -> None:
    try:
        await access_grants.attach(db, grant)
    except NoSuchEntity as exc:  # the requester was deleted while the request waited
        raise ApiError(
            "ResourceNotFoundException",
            f"The requester {row.requester_arn} no longer exists: {exc.message}",
        ) from exc
    await _audit_policy_call(
        db,
        services,
        row,
        "Put",
        now=now,
        detail={
            "policyName": grant.policy_name,
            "approvedBy": decider.arn,
            "target": row.target,
            "documentName": row.document_name,
            "expiresAt": grant.expires_at.strftime(access_grants.TIME_FORMAT),
        },
    )


def _end_reason(row: AccessRequestRow) -> str:
    if row.status == AccessStatus.REVOKED:
        return f"Access request {row.request_id} was revoked"
    return f"Access request {row.request_id} expired"


async def _remove_grant(
    db: Db, services: Services, row: AccessRequestRow, *, why: str, now: dt.datetime
) -> None:
    present = await access_grants.detach(db, _holder_type(row), row.grant_holder_name, row.request_id)
    await _audit_policy_call(
        db,
        services,
        row,
        "Delete",
        now=now,
        detail={
            "policyName": access_grants.policy_name(row.request_id),
            "reason": why,
            "policyWasPresent": present,
        },
    )


async def revoke(
    services: Services, row: AccessRequestRow, by: Principal, *, reason: str | None, now: dt.datetime
) -> AccessRequestRow:
    """Approved (or Pending) → Revoked: the grant's policy deleted and the requester's sessions on
    the target ended."""
    why = reason or f"Revoked by {by.arn}"
    async with services.engine.begin() as conn:
        previous = await access_requests.revoke(conn, row.request_id, by_arn=by.arn, reason=why, now=now)
        if previous is None:
            raise conflict(row, "revoked")
        if previous == AccessStatus.APPROVED:
            await _remove_grant(conn, services, row, why=f"revoked by {by.arn}", now=now)
        changed = await _changed(conn, services, row.request_id, now=now)
    if previous == AccessStatus.APPROVED:
        await end_sessions(services, changed, now=now)
    await _wake(services)
    return changed


async def expire(services: Services, row: AccessRequestRow, *, now: dt.datetime) -> bool:
    """A grant whose time is up (or a request nobody decided in time) → Expired. True when this
    call (this node) took the step; then it also ends the requester's sessions on the target."""
    was_granted = row.status == AccessStatus.APPROVED
    why = "the grant's time is up" if was_granted else "nobody decided it in time"
    async with services.engine.begin() as conn:
        if not await access_requests.expire(conn, row, reason=f"Expired: {why}", now=now):
            return False  # another node took it, or it was revoked meanwhile
        await audit_log.record_service_event(
            conn,
            now=now,
            action="openssm:ExpireAccessRequest",
            resource=target_arn(services.config.region, services.config.account_id, row.target),
            detail={
                "accessRequestId": row.request_id,
                "requester": row.requester_arn,
                "reason": why,
                "node": services.config.node_id,
            },
        )
        if was_granted:
            await _remove_grant(conn, services, row, why="expired", now=now)
        changed = await _changed(conn, services, row.request_id, now=now)
    if was_granted:
        await end_sessions(services, changed, now=now)
    await _wake(services)
    return True


async def end_sessions(services: Services, row: AccessRequestRow, *, now: dt.datetime) -> list[str]:
    """End the requester's running sessions on the target of a grant that has ended, except those
    another running grant of theirs still covers; returns the sessions this call ended."""
    engine = services.engine
    still_granted = {
        grant.document_name
        for grant in await access_requests.live_grants(engine, row.requester_arn, row.target, now=now)
        if grant.request_id != row.request_id
    }
    reason = _end_reason(row)
    ended = []
    for session in await sessions.terminable_of(engine, row.requester_arn, row.target):
        if session.document_name in still_granted:
            continue
        if not await end_session(services, session, reason, now=now):
            continue  # someone else is ending it
        ended.append(session.session_id)
        await audit_log.record_service_event(
            engine,
            now=now,
            action="ssm:TerminateSession",
            resource=session_arn(services.config.region, services.config.account_id, session.session_id),
            detail={"accessRequestId": row.request_id, "reason": reason, "target": row.target},
        )
    if ended:
        log.info("%s: ended sessions %s", reason, ", ".join(ended))
    return ended


async def expire_due(services: Services) -> int:
    """Every grant and pending request that is due now (one pass of the expiry task)."""
    taken = 0
    for row in await access_requests.due(services.engine, now=services.clock.now()):
        if await expire(services, row, now=services.clock.now()):
            taken += 1
    return taken


async def end_sessions_of_recent_ends(services: Services) -> int:
    """Look again at grants that ended within ``SECOND_LOOK``: sessions written just after their end
    (or left by a node that died before it ended them) are ended now."""
    now = services.clock.now()
    ended = 0
    for row in await access_requests.grants_ended_since(services.engine, now - SECOND_LOOK):
        ended += len(await end_sessions(services, row, now=now))
    return ended


def describe(row: AccessRequestRow, region: str, account: str) -> dict[str, Any]:
    """An access request in the API's responses."""
    return {
        "AccessRequestId": row.request_id,
        "Arn": vocabulary.request_arn(region, account, row.request_id),
        "Requester": row.requester_name,
        "RequesterArn": row.requester_arn,
        "Target": row.target,
        "DocumentName": row.document_name,
        "DurationSeconds": row.duration_seconds,
        "Reason": row.reason,
        "Status": str(row.status),
        "CreatedDate": epoch(row.created_at),
        "PendingUntil": epoch(row.pending_until) if row.status == AccessStatus.PENDING else None,
        "DecidedDate": epoch(row.decided_at),
        "Decider": row.decider_name,
        "DeciderArn": row.decider_arn,
        "DecisionReason": row.decision_reason,
        "ExpirationDate": epoch(row.expires_at),
        "EndedDate": epoch(row.ended_at)
        if row.status in (AccessStatus.REVOKED, AccessStatus.EXPIRED)
        else None,
        "EndedBy": row.ended_by_arn,
        "EndReason": row.end_reason,
        "GrantPolicyName": access_grants.policy_name(row.request_id) if row.was_granted else None,
    }
