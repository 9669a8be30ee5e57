"""A tamper-evident audit trail and session recordings, as CloudTrail's log file integrity validation.

- **Records.** Every audit row (``store.audit_log``) is hashed as canonical JSON of all its columns.
  A finished session recording is sealed by one audit row of its own, a service event
  ``openssm:SealSessionRecording`` naming each file with its size, SHA-256 and the SHA-256 of each
  1 MiB chunk (:func:`seal_recording`, called by the recorder once its files are synced). A
  recording written again later (a session carried on after a restart) is sealed again; the latest
  seal of a file is the one that counts.
- **Digests.** Every ``interval`` seconds the sealer (:class:`AuditSealer`, on every node; one wins
  each digest by its unique sequence number) writes a digest of the rows since the last one: each
  row's id and hash, the hash chain over them (``chain = SHA-256(previous chain ‖ row hash)``,
  continuing the previous digest's), the previous digest's hash, and an Ed25519 signature by the
  server's audit key. Rows are sealed once they are ``SEAL_DELAY`` old, so a transaction that took
  a lower id but commits a moment later is not left out.
- **The key** lives outside the data directory (``--audit-signing-key``, created 0600 on first
  start with its public half beside it as ``.pub``): whoever can rewrite the database and the
  recordings cannot sign a digest without it. Keep a copy of the public key with the auditors.
- **Verifying** (:func:`verify`, ``openssm audit verify``) checks each digest's signature and its
  link to the one before, then every row against the digest that lists it: a row whose hash
  differs was changed, a listed row that is gone was removed, a row within a digest's range that it
  does not list was inserted. Then every sealed recording file against its seal: missing (removed),
  a chunk that differs (changed, with its byte range), bytes beyond the sealed size (inserted), and
  recording files no seal names (inserted, or not sealed yet while their session runs). Rows newer
  than the last digest are reported as not sealed yet: they cannot be vouched for (as with
  CloudTrail, a digest not yet delivered validates nothing).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import pathlib
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Final

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from openssm.errors import OpenSSMError
from openssm.iam.arn import session_arn
from openssm.logs.options import AUDIT_KEY_ENV
from openssm.protocol.session_status import FINAL_STATUSES
from openssm.services import Services
from openssm.store import audit_digests, audit_log, sessions
from openssm.store.audit_digests import DigestRow
from openssm.store.audit_log import AuditRow
from openssm.store.rows import Db

log = logging.getLogger(__name__)

SEAL_ACTION: Final = "openssm:SealSessionRecording"
CHUNK_BYTES: Final = 1024 * 1024
# What the recorder writes (the asciicast, the transcript and its line times, the events).
RECORDINGS: Final = (".cast", ".log", ".log.times", ".jsonl")
DIGEST_VERSION: Final = 1
GENESIS: Final = "0" * 64  # the chain before the first row
SEAL_DELAY: Final = dt.timedelta(seconds=5)
MAX_RECORDS_PER_DIGEST: Final = 5000
DEFAULT_INTERVAL: Final = 60.0  # seconds between digests (CloudTrail: an hour)


class IntegrityError(OpenSSMError):
    """The audit key cannot be used (misplaced, unreadable, not an Ed25519 key)."""


# -- hashing -------------------------------------------------------------------------------------


def canonical(value: Any) -> bytes:
    """JSON with sorted keys and no spaces: the same bytes for the same value, wherever computed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(row: AuditRow) -> str:
    """SHA-256 of every column of an audit row."""
    # The columns as they are: dataclasses.asdict would deep-copy ``detail`` first, for the same
    # JSON (the sealer hashes every heartbeat's audit row: a fleet's most frequent work here).
    fields = {field.name: getattr(row, field.name) for field in dataclasses.fields(row)}
    fields["time"] = row.time.isoformat()
    return hashlib.sha256(canonical(fields)).hexdigest()


def chain_next(chain: str, hashed: str) -> str:
    return hashlib.sha256(bytes.fromhex(chain) + bytes.fromhex(hashed)).hexdigest()


def digest_hash(row: DigestRow) -> str:
    """What the next digest names as its predecessor: the body and the signature it was stored with."""
    return hashlib.sha256(row.body.encode() + b"\n" + row.signature.encode()).hexdigest()


def file_seal(path: pathlib.Path) -> dict[str, Any]:
    """A recording file's size, SHA-256 and the SHA-256 of each ``CHUNK_BYTES`` chunk."""
    whole, chunks, size = hashlib.sha256(), [], 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            whole.update(chunk)
            chunks.append(hashlib.sha256(chunk).hexdigest())
            size += len(chunk)
    return {"name": path.name, "size": size, "sha256": whole.hexdigest(), "chunks": chunks}


# -- the key -------------------------------------------------------------------------------------


def public_path(key_path: pathlib.Path) -> pathlib.Path:
    return key_path.with_name(key_path.name + ".pub")


def _inside(path: pathlib.Path, directory: pathlib.Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def load_or_create_key(path: pathlib.Path, data_dir: pathlib.Path) -> Ed25519PrivateKey:
    """The server's audit key, made on first use (0600, in a 0700 directory, written whole or not
    at all: a node racing another to create it reads the winner's). Refused inside the data
    directory: a copy of the data (a backup, a stolen disk) must not carry the means to re-sign it."""
    if _inside(path, data_dir):
        raise IntegrityError(
            f"the audit signing key {path} must be kept outside the data directory {data_dir}: "
            f"choose another path with --audit-signing-key (or ${AUDIT_KEY_ENV})"
        )
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        scratch = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(scratch, path)  # fails if another process made it first: then use theirs
            public_path(path).write_bytes(_public_pem(key.public_key()))
            log.info("created the audit signing key %s (public key %s)", path, public_path(path))
        except FileExistsError:
            pass
        finally:
            scratch.unlink()
    if path.stat().st_mode & 0o077:
        raise IntegrityError(f"the audit signing key {path} is readable by others: chmod 600 {path}")
    loaded = _load_key(path)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise IntegrityError(f"{path} is not an Ed25519 private key")
    return loaded


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _load_key(path: pathlib.Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"cannot read the audit key {path}: {exc.strerror or exc}") from exc
    try:
        if b"PRIVATE KEY" in data:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"{path} is not a PEM key") from exc


def load_public_key(path: pathlib.Path) -> Ed25519PublicKey:
    """The key digests are checked with: from a public key file, or derived from the private key."""
    key = _load_key(path)
    if isinstance(key, Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, Ed25519PublicKey):
        return key
    raise IntegrityError(f"{path} is not an Ed25519 key")


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- sealing -------------------------------------------------------------------------------------


async def seal_recording(services: Services, session_id: str, paths: Iterable[pathlib.Path]) -> None:
    """The one call the recorder makes once a session's files are synced: their seal, as an audit
    row, so the digests vouch for it. Never fails the session's ending (logged instead)."""
    wanted = list(paths)
    try:
        files = await asyncio.to_thread(lambda: [file_seal(path) for path in wanted if path.exists()])
        config = services.config
        await audit_log.record_service_event(
            services.engine,
            now=services.clock.now(),
            action=SEAL_ACTION,
            resource=session_arn(config.region, config.account_id, session_id),
            detail={"session_id": session_id, "files": files},
        )
    except (OSError, OpenSSMError, ValueError):
        log.exception("session %s: could not seal its recording", session_id)


class AuditSealer:
    """Writes a signed digest of the audit rows since the last one, every ``interval`` seconds."""

    def __init__(
        self,
        services: Services,
        key: Ed25519PrivateKey,
        interval: float = DEFAULT_INTERVAL,
        seal_delay: dt.timedelta = SEAL_DELAY,
    ) -> None:
        self.services = services
        self.key = key
        self.interval = interval
        self.seal_delay = seal_delay

    async def seal_once(self) -> DigestRow | None:
        """The digest written now, or None (nothing to seal, or another node sealed first)."""
        engine, now = self.services.engine, self.services.clock.now()
        previous = await audit_digests.latest(engine)
        after_id = previous.last_id if previous else 0
        # Only the rows up to the first that is not yet SEAL_DELAY old: a transaction holding a
        # lower id may commit a moment later, and nodes' clocks differ a little.
        until = now - self.seal_delay
        rows = list(
            itertools.takewhile(
                lambda row: row.time <= until,
                await audit_log.after(engine, after_id, limit=MAX_RECORDS_PER_DIGEST),
            )
        )
        if not rows:
            return None
        chain_start = json.loads(previous.body)["chain_end"] if previous else GENESIS
        records, chain = [], chain_start
        for row in rows:
            hashed = record_hash(row)
            records.append([row.id, hashed])
            chain = chain_next(chain, hashed)
        sequence = previous.sequence + 1 if previous else 1
        body = canonical(
            {
                "version": DIGEST_VERSION,
                "sequence": sequence,
                "time": now.isoformat(),
                "key": key_id(self.key.public_key()),
                "previous_digest": digest_hash(previous) if previous else None,
                "after_id": after_id,
                "last_id": rows[-1].id,
                "first_time": rows[0].time.isoformat(),
                "last_time": rows[-1].time.isoformat(),
                "chain_start": chain_start,
                "chain_end": chain,
                "records": records,
            }
        ).decode()
        signature = base64.b64encode(self.key.sign(body.encode())).decode()
        digest = DigestRow(sequence, now, after_id + 1, rows[-1].id, body, signature)
        return digest if await audit_digests.add(engine, digest) else None

    async def run(self) -> None:
        while True:
            try:
                while (digest := await self.seal_once()) is not None and digest.last_id - digest.first_id >= (
                    MAX_RECORDS_PER_DIGEST - 1
                ):
                    pass  # perhaps a full digest: more rows may be waiting
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment: the next pass catches up
                log.exception("sealing the audit trail failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.services.stopping.wait(), self.interval)
            if self.services.stopping.is_set():
                return


# -- verifying -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One thing found: ``kind`` is changed, removed, inserted, unsealed (not an error) or invalid
    (a digest that does not verify); ``what`` names the record, recording or digest."""

    kind: str
    what: str
    detail: str = ""

    @property
    def is_problem(self) -> bool:
        return self.kind != "unsealed"

    def __str__(self) -> str:
        return f"{self.kind}: {self.what}" + (f" ({self.detail})" if self.detail else "")


@dataclasses.dataclass(slots=True)
class Report:
    findings: list[Finding] = dataclasses.field(default_factory=list)
    digests: int = 0
    records: int = 0
    recordings: int = 0

    @property
    def valid(self) -> bool:
        return not any(finding.is_problem for finding in self.findings)

    def add(self, kind: str, what: str, detail: str = "") -> None:
        self.findings.append(Finding(kind, what, detail))


def _in_window(body: Mapping[str, Any], start: dt.datetime | None, end: dt.datetime | None) -> bool:
    first, last = dt.datetime.fromisoformat(body["first_time"]), dt.datetime.fromisoformat(body["last_time"])
    return (start is None or last >= start) and (end is None or first <= end)


def _check_digests(
    digests: Sequence[DigestRow], key: Ed25519PublicKey, report: Report
) -> list[dict[str, Any]]:
    """Each digest's signature and its link to the one before; the bodies that verify."""
    bodies: list[dict[str, Any]] = []
    previous: DigestRow | None = None
    for digest in digests:
        what = f"digest {digest.sequence}"
        try:
            key.verify(base64.b64decode(digest.signature), digest.body.encode())
            body = json.loads(digest.body)
        except (InvalidSignature, ValueError):
            report.add("invalid", what, "its signature does not match its content")
            previous = digest
            continue
        expected_sequence = previous.sequence + 1 if previous else 1
        if digest.sequence != expected_sequence or body["sequence"] != digest.sequence:
            report.add("removed", f"digest {expected_sequence}", f"the digests jump to {digest.sequence}")
        elif previous is not None and body["previous_digest"] != digest_hash(previous):
            report.add("changed", f"digest {previous.sequence}", f"digest {digest.sequence} names another")
        if (digest.first_id, digest.last_id) != (body["after_id"] + 1, body["last_id"]):
            report.add("changed", what, "its stored range differs from the signed one")
        bodies.append(body)
        previous = digest
    return bodies


def _check_records(body: Mapping[str, Any], rows: Sequence[AuditRow], report: Report) -> None:
    listed = {int(record_id): hashed for record_id, hashed in body["records"]}
    present = {row.id: row for row in rows}
    chain = body["chain_start"]
    for _record_id, hashed in body["records"]:
        chain = chain_next(chain, hashed)
    if chain != body["chain_end"]:
        report.add("invalid", f"digest {body['sequence']}", "its record hashes do not make its chain")
    for record_id, hashed in listed.items():
        row = present.get(record_id)
        if row is None:
            report.add("removed", f"audit record {record_id}")
        elif record_hash(row) != hashed:
            report.add("changed", f"audit record {record_id}", f"{row.action} on {row.resource}")
    for row in rows:
        if row.id not in listed:
            report.add("inserted", f"audit record {row.id}", f"{row.action} by {row.principal_arn}")
    report.records += len(listed)


def _check_file(directory: pathlib.Path, seal: Mapping[str, Any], report: Report) -> None:
    name = str(seal["name"])
    path = directory / pathlib.Path(name).name
    what = f"recording {name}"
    if not path.exists():
        report.add("removed", what)
        return
    found = file_seal(path)
    report.recordings += 1
    if found["sha256"] == seal["sha256"]:
        return
    first_difference = next(
        (
            index
            for index, (sealed, now) in enumerate(zip(seal["chunks"], found["chunks"], strict=False))
            if sealed != now
        ),
        min(len(seal["chunks"]), len(found["chunks"])),
    )
    start = first_difference * CHUNK_BYTES
    where = f"first difference in bytes {start}-{start + CHUNK_BYTES - 1}"
    grown = int(found["size"]) - int(seal["size"])
    if grown > 0:
        report.add("inserted", what, f"{grown} bytes more than sealed; {where}")
    elif grown < 0:
        report.add("removed", what, f"{-grown} bytes fewer than sealed; {where}")
    else:
        report.add("changed", what, where)


async def verify(
    db: Db,
    key: Ed25519PublicKey,
    recordings: pathlib.Path,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> Report:
    """Check the audit trail and the recordings (rows of digests within ``start``..``end`` when
    given; every digest's signature and link always) and report what was changed, removed or
    inserted."""
    report = Report()
    digests = await audit_digests.every_digest(db)
    report.digests = len(digests)
    bodies = _check_digests(digests, key, report)
    seals: dict[str, Mapping[str, Any]] = {}
    for body in bodies:
        rows = await audit_log.id_range(db, body["after_id"] + 1, body["last_id"])
        if _in_window(body, start, end):
            _check_records(body, rows, report)
        listed = {int(record_id): hashed for record_id, hashed in body["records"]}
        for row in rows:  # seals count only from rows the digest vouches for
            if row.action == SEAL_ACTION and listed.get(row.id) == record_hash(row):
                for seal in row.detail.get("files", []):
                    seals[str(seal["name"])] = seal
    last_id = bodies[-1]["last_id"] if bodies else 0
    pending: dict[str, Mapping[str, Any]] = {}  # files sealed by rows no digest covers yet
    for row in await audit_log.id_range(db, last_id + 1, None):
        if (start is None or row.time >= start) and (end is None or row.time <= end):
            report.add("unsealed", f"audit record {row.id}", "newer than the last digest")
        if row.action == SEAL_ACTION:
            pending.update((str(seal.get("name")), seal) for seal in row.detail.get("files", []))
    for name, seal in seals.items():
        later = pending.get(name)
        if later is not None and _matches(recordings, later):
            report.add("unsealed", f"recording {name}", "written again and sealed after the last digest")
        else:
            _check_file(recordings, seal, report)
    await _unsealed_files(db, recordings, seals, set(pending), report)
    return report


def _matches(directory: pathlib.Path, seal: Mapping[str, Any]) -> bool:
    path = directory / pathlib.Path(str(seal["name"])).name
    return path.exists() and file_seal(path)["sha256"] == seal.get("sha256")


def _files_in(directory: pathlib.Path) -> list[pathlib.Path]:
    """The recording files in ``directory`` (not the recorder's state, such as ``.resume`` files)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if path.is_file() and path.name.endswith(RECORDINGS))


async def _unsealed_files(
    db: Db,
    directory: pathlib.Path,
    seals: Mapping[str, Mapping[str, Any]],
    pending: set[str],
    report: Report,
) -> None:
    """Recording files no digest-vouched seal names: a live session's, or one sealed since the last
    digest (not sealed yet), or put there afterwards (inserted)."""
    for path in await asyncio.to_thread(_files_in, directory):
        if path.name in seals:
            continue
        if path.name in pending:
            report.add("unsealed", f"recording {path.name}", "sealed after the last digest")
            continue
        session_id = path.name.split(".", 1)[0]
        row = await sessions.get(db, session_id)
        if row is not None and row.status not in FINAL_STATUSES:
            report.add("unsealed", f"recording {path.name}", "its session has not ended")
        elif row is not None:
            # A node that stops without ending its sessions cannot seal them (the session is ended
            # by another node's sweeper): said, but not proof of tampering.
            report.add("unsealed", f"recording {path.name}", "its session ended without a seal")
        else:
            report.add("inserted", f"recording {path.name}", "no seal names it, nor any session")


def install(app: web.Application, services: Services) -> AuditSealer | None:
    """Seal the audit trail while the application runs, when the server has an audit key (loaded,
    or made, now: a key that cannot be used stops the server from starting, with the reason)."""
    path = services.config.audit_signing_key
    if path is None:
        return None
    sealer = AuditSealer(
        services, load_or_create_key(path, services.config.data_dir), services.config.audit_digest_seconds
    )

    async def sealing(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sealer.run(), name="audit-sealer")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sealing)
    return sealer
