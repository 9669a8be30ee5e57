"""The tamper-evident audit trail and session recordings: records hashed and chained, signed digests,
and `openssm audit verify` finding every record and recording byte changed, removed or inserted."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import pathlib
import stat
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.integration.api_harness import ApiServer
from tests.integration.test_gateway_sessions import FAST, IID, SID, output, start
from tests.support.gateway import NODE_ID, running_gateway, wait_for
from tests.support.postgres import fresh_postgres_database, require_postgres
from tests.support.wait import wait_until

from openssm.bus.inprocess import InProcessBus
from openssm.cli import main
from openssm.clock import ManualClock
from openssm.logs import integrity
from openssm.logs.service import SessionLogging
from openssm.services import ServerConfig, Services
from openssm.store import audit_digests, audit_log
from openssm.store.audit_digests import DigestRow
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.secrets import SecretCipher
from openssm.store.tables import audit_digests as digests_table
from openssm.store.tables import audit_log as audit_table


@dataclasses.dataclass
class Trail:
    services: Services
    clock: ManualClock
    sealer: integrity.AuditSealer
    key_path: pathlib.Path
    data_dir: pathlib.Path
    database_url: str

    @property
    def public_key(self) -> Ed25519PublicKey:
        return integrity.load_public_key(integrity.public_path(self.key_path))

    async def events(self, count: int, action: str = "ssm:StartSession") -> None:
        for index in range(count):
            await audit_log.record(
                self.services.engine,
                now=self.clock.now(),
                principal_arn="arn:aws:iam::123456789012:user/alice",
                action=action,
                resource=f"arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-{index:017x}",
                decision="allowed",
                matched_statement="Allow inline policy p statement 0",
                source_ip="192.0.2.1",
                detail={"target": f"mi-{index:017x}"},
            )
            self.clock.advance(1)

    async def seal(self) -> DigestRow | None:
        self.clock.advance(10)  # past the seal delay
        return await self.sealer.seal_once()

    async def verify(self, **window: dt.datetime) -> integrity.Report:
        return await integrity.verify(
            self.services.engine, self.public_key, self.data_dir / "sessions", **window
        )

    async def sql(self, statement: sa.Executable) -> None:
        async with self.services.engine.begin() as conn:
            await conn.execute(statement)


@pytest.fixture
async def trail(tmp_path: pathlib.Path) -> AsyncIterator[Trail]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with contextlib.ExitStack() as stack:
        url = database_url_for(data_dir)
        if os.environ.get("OPENSSM_TEST_DATABASE") == "postgresql":  # the scale-out store
            require_postgres()
            url = stack.enter_context(fresh_postgres_database())
        engine = make_engine(url)
        await migrate(engine)
        async for made in _trail(engine, url, tmp_path, data_dir):
            yield made


async def _trail(
    engine: AsyncEngine, url: str, tmp_path: pathlib.Path, data_dir: pathlib.Path
) -> AsyncIterator[Trail]:
    clock = ManualClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC))
    key_path = tmp_path / "keys" / "audit-signing.key"
    services = Services(
        config=ServerConfig(data_dir=data_dir, account_id="123456789012", audit_signing_key=key_path),
        engine=engine,
        bus=InProcessBus(),
        cipher=SecretCipher.generate(),
        clock=clock,
    )
    key = integrity.load_or_create_key(key_path, data_dir)
    try:
        yield Trail(services, clock, integrity.AuditSealer(services, key), key_path, data_dir, url)
    finally:
        await engine.dispose()


def problems(report: integrity.Report) -> list[str]:
    return sorted(str(finding) for finding in report.findings if finding.is_problem)


def kinds(report: integrity.Report) -> list[tuple[str, str]]:
    return sorted((finding.kind, finding.what) for finding in report.findings if finding.is_problem)


# -- the key -------------------------------------------------------------------------------------


def test_the_key_is_made_0600_outside_the_data_dir_with_its_public_half(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    path = tmp_path / "etc" / "audit-signing.key"
    key = integrity.load_or_create_key(path, data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    public = integrity.load_public_key(integrity.public_path(path))
    assert integrity.key_id(public) == integrity.key_id(key.public_key())
    again = integrity.load_or_create_key(path, data_dir)  # the same key on the next start
    assert integrity.key_id(again.public_key()) == integrity.key_id(public)
    with pytest.raises(integrity.IntegrityError, match="outside the data directory"):
        integrity.load_or_create_key(data_dir / "audit.key", data_dir)
    os.chmod(path, 0o644)
    with pytest.raises(integrity.IntegrityError, match="chmod 600"):
        integrity.load_or_create_key(path, data_dir)


# -- audit records ---------------------------------------------------------------------------------


async def test_an_untouched_trail_verifies_and_digests_chain(trail: Trail) -> None:
    await trail.events(5)
    first = await trail.seal()
    await trail.events(3)
    second = await trail.seal()
    assert first is not None and second is not None
    assert (first.first_id, first.last_id, second.first_id, second.last_id) == (1, 5, 6, 8)
    body = json.loads(second.body)
    assert body["previous_digest"] == integrity.digest_hash(first)
    assert body["chain_start"] == json.loads(first.body)["chain_end"]
    assert await trail.seal() is None  # nothing new: no digest
    report = await trail.verify()
    assert report.valid and (report.digests, report.records) == (2, 8), problems(report)


async def test_a_digest_stops_at_the_first_row_too_young_to_seal(trail: Trail) -> None:
    """Rows are sealed in id order up to the first one written less than the seal delay ago (a
    node whose clock runs ahead, or a transaction still committing), so none is ever skipped."""
    await trail.events(2)
    await audit_log.record(  # id 3, written by a node whose clock is 30 s ahead
        trail.services.engine,
        now=trail.clock.now() + dt.timedelta(seconds=30),
        principal_arn="arn:aws:iam::123456789012:user/bob",
        action="ssm:DescribeSessions",
        resource="*",
        decision="allowed",
        matched_statement=None,
        source_ip="192.0.2.2",
    )
    await trail.events(1)  # id 4
    trail.clock.advance(10)
    digest = await trail.sealer.seal_once()
    assert digest is not None and (digest.first_id, digest.last_id) == (1, 2)
    trail.clock.advance(30)
    digest = await trail.sealer.seal_once()
    assert digest is not None and (digest.first_id, digest.last_id) == (3, 4)
    assert (await trail.verify()).valid


async def test_a_changed_record_is_found_and_named(trail: Trail) -> None:
    await trail.events(6)
    await trail.seal()
    await trail.sql(sa.update(audit_table).where(audit_table.c.id == 3).values(decision="implicitDeny"))
    await trail.sql(
        sa.update(audit_table).where(audit_table.c.id == 5).values(detail={"target": "mi-somewhere-else"})
    )
    assert kinds(await trail.verify()) == [("changed", "audit record 3"), ("changed", "audit record 5")]


async def test_a_removed_record_is_found_and_named(trail: Trail) -> None:
    await trail.events(6)
    await trail.seal()
    await trail.sql(sa.delete(audit_table).where(audit_table.c.id == 4))
    assert kinds(await trail.verify()) == [("removed", "audit record 4")]


async def test_an_inserted_record_is_found_and_named(trail: Trail) -> None:
    await trail.events(6)
    # A gap, as a rolled-back transaction leaves in a sequence: the digest does not list id 4.
    await trail.sql(sa.delete(audit_table).where(audit_table.c.id == 4))
    await trail.seal()
    assert (await trail.verify()).valid
    forged = {
        "id": 4,
        "time": dt.datetime(2026, 12, 7, 9, 0, 3, tzinfo=dt.UTC),
        "principal_arn": "arn:aws:iam::123456789012:user/mallory",
        "action": "ssm:StartSession",
        "resource": "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-00000000000000004",
        "decision": "allowed",
        "matched_statement": None,
        "source_ip": "192.0.2.9",
        "detail": {},
    }
    await trail.sql(sa.insert(audit_table).values(**forged))
    report = await trail.verify()
    assert kinds(report) == [("inserted", "audit record 4")]
    assert "user/mallory" in problems(report)[0]


async def test_records_after_the_last_digest_are_reported_unsealed_not_invalid(trail: Trail) -> None:
    await trail.events(2)
    await trail.seal()
    await trail.events(1)
    report = await trail.verify()
    assert report.valid
    assert [(f.kind, f.what) for f in report.findings] == [("unsealed", "audit record 3")]


async def test_a_changed_removed_or_resigned_digest_is_found(trail: Trail) -> None:
    for _ in range(3):
        await trail.events(2)
        await trail.seal()
    # Rewriting a record and its digest's listing needs the key: without it the signature fails.
    body = json.loads((await _digest(trail, 2)).body)
    body["records"][0][1] = "0" * 64
    await trail.sql(
        sa.update(digests_table)
        .where(digests_table.c.sequence == 2)
        .values(body=integrity.canonical(body).decode())
    )
    assert ("invalid", "digest 2") in kinds(await trail.verify())
    # Re-signed with another key: still refused (the verifier holds the server's public key).
    other = integrity.AuditSealer(trail.services, Ed25519PrivateKey.generate())
    await trail.sql(sa.delete(digests_table).where(digests_table.c.sequence >= 2))
    await other.seal_once()
    assert ("invalid", "digest 2") in kinds(await trail.verify())


async def test_a_removed_digest_is_found(trail: Trail) -> None:
    for _ in range(3):
        await trail.events(2)
        await trail.seal()
    await trail.sql(sa.delete(digests_table).where(digests_table.c.sequence == 2))
    assert ("removed", "digest 2") in kinds(await trail.verify())


async def _digest(trail: Trail, sequence: int) -> DigestRow:
    [row] = [d for d in await audit_digests.every_digest(trail.services.engine) if d.sequence == sequence]
    return row


async def test_from_and_to_limit_which_records_are_checked(trail: Trail) -> None:
    await trail.events(3)
    await trail.seal()
    middle = trail.clock.now()
    await trail.events(3)
    await trail.seal()
    await trail.sql(sa.update(audit_table).where(audit_table.c.id == 2).values(action="ssm:Nothing"))
    assert kinds(await trail.verify()) == [("changed", "audit record 2")]
    assert (await trail.verify(start=middle)).valid  # the first digest's records are outside
    assert kinds(await trail.verify(end=middle)) == [("changed", "audit record 2")]


# -- recordings ------------------------------------------------------------------------------------


async def recorded(trail: Trail, name: str, data: bytes) -> pathlib.Path:
    directory = trail.data_dir / "sessions"
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


async def test_recording_bytes_changed_removed_or_inserted_are_found(trail: Trail) -> None:
    big = bytes(range(256)) * 4096 * 3  # 3 MiB: three chunks
    cast = await recorded(trail, "alice-0123456789abcdef0.cast", big)
    log = await recorded(trail, "alice-0123456789abcdef0.log", b"$ whoami\nalice\n")
    jsonl = await recorded(trail, "alice-0123456789abcdef0.jsonl", b'{"event":"session_started"}\n')
    await integrity.seal_recording(trail.services, "alice-0123456789abcdef0", [cast, log, jsonl])
    await trail.seal()
    report = await trail.verify()
    assert report.valid and report.recordings == 3, problems(report)

    changed = bytearray(big)
    changed[CHUNK + 10] ^= 0xFF  # one byte in the second chunk
    cast.write_bytes(bytes(changed))
    log.write_bytes(b"$ whoami\nalice\n$ rm -rf /evidence\n")  # lines added
    jsonl.write_bytes(b"")  # emptied
    findings = {(f.kind, f.what): f.detail for f in (await trail.verify()).findings}
    assert findings[("changed", "recording alice-0123456789abcdef0.cast")].startswith(
        f"first difference in bytes {CHUNK}-{2 * CHUNK - 1}"
    )
    assert "19 bytes more" in findings[("inserted", "recording alice-0123456789abcdef0.log")]
    assert "28 bytes fewer" in findings[("removed", "recording alice-0123456789abcdef0.jsonl")]

    cast.unlink()
    planted = await recorded(trail, "mallory-0000000000000000a.cast", b"fake")
    assert {
        ("removed", "recording alice-0123456789abcdef0.cast"),
        ("inserted", f"recording {planted.name}"),
    } <= set(kinds(await trail.verify()))


async def test_a_resealed_recording_counts_by_its_latest_seal(trail: Trail) -> None:
    """A recording written again after a restart (the session carried on) is sealed again."""
    path = await recorded(trail, "bob-0123456789abcdef0.log", b"first part\n")
    await integrity.seal_recording(trail.services, "bob-0123456789abcdef0", [path])
    await trail.seal()
    with path.open("ab") as handle:
        handle.write(b"second part\n")
    assert ("inserted", f"recording {path.name}") in kinds(await trail.verify())
    await integrity.seal_recording(trail.services, "bob-0123456789abcdef0", [path])
    unsealed = await trail.verify()
    assert unsealed.valid  # sealed again, after the last digest: not yet vouched for, not tampered
    await trail.seal()
    assert (await trail.verify()).valid


CHUNK = integrity.CHUNK_BYTES


# -- the recorder and the command ------------------------------------------------------------------


async def test_the_recorder_seals_a_finished_session(tmp_path: pathlib.Path) -> None:
    async with running_gateway(
        tmp_path, settings=FAST, extensions=lambda services: [SessionLogging(services)]
    ) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user()
        shell = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": {}}
        s = await start(gw, document=shell, document_name="SSM-SessionManagerRunShell", parameters={})
        await s.agent.send_bytes(output(0, b"$ ").encode())
        await gw.services.bus.publish(
            f"node.{NODE_ID}", {"type": "terminate", "session_id": SID, "reason": "done"}
        )
        await gw.wait_status(SID, "Terminated")

        async def sealed() -> list[audit_log.AuditRow]:
            rows = await audit_log.lookup(gw.engine, audit_log.AuditQuery(event_name="SealSessionRecording"))
            return rows

        await wait_for(sealed, 5, "the recording was never sealed")
        [seal] = await sealed()
        names = sorted(file["name"] for file in seal.detail["files"])
        assert names == sorted(path.name for path in (tmp_path / "sessions").iterdir())
        assert f"{SID}.cast" in names and f"{SID}.log" in names and f"{SID}.jsonl" in names
        key = integrity.load_or_create_key(tmp_path.parent / f"{tmp_path.name}-key" / "k.pem", tmp_path)
        sealer = integrity.AuditSealer(gw.services, key, seal_delay=dt.timedelta(0))
        assert await sealer.seal_once() is not None
        report = await integrity.verify(gw.engine, key.public_key(), tmp_path / "sessions")
        assert report.valid and report.recordings == len(names), problems(report)
        cast = tmp_path / "sessions" / f"{SID}.cast"
        data = bytearray(cast.read_bytes())
        data[-2] ^= 0x01  # one byte of the recording, its length kept
        cast.write_bytes(bytes(data))
        report = await integrity.verify(gw.engine, key.public_key(), tmp_path / "sessions")
        assert kinds(report) == [("changed", f"recording {SID}.cast")]


async def test_openssm_audit_verify(trail: Trail) -> None:
    await trail.events(4)
    await trail.seal()
    args = ["audit", "verify", "--data-dir", str(trail.data_dir), "--key", str(trail.key_path)]
    args += ["--database-url", trail.database_url]
    result = await _invoke(args)
    assert result.exit_code == 0, result.output
    assert "1 digests, 4 audit records and 0 recording files checked: valid" in result.output
    await trail.sql(sa.delete(audit_table).where(audit_table.c.id == 2))
    result = await _invoke([*args, "--from", "2026-12-07T08:00:00Z"])
    assert result.exit_code == 1
    assert "removed: audit record 2" in result.output and "1 problems found" in result.output
    assert (await _invoke([*args, "--from", "2026-12-08T00:00:00"])).exit_code == 0  # outside the window


async def _invoke(args: list[str]) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, args, catch_exceptions=False)


def test_a_running_server_seals_its_trail(tmp_path: pathlib.Path) -> None:
    """The composition starts the sealer: API calls become audit rows, then a signed digest."""
    key_path = tmp_path / "keys" / "audit.key"
    server = ApiServer(tmp_path / "data", audit_signing_key=key_path, audit_digest_seconds=1.0).start()
    try:
        server.client().describe_sessions(State="Active")
        args = ["audit", "verify", "--data-dir", str(tmp_path / "data"), "--key", str(key_path)]
        if server.config.database_url:  # OPENSSM_TEST_DATABASE=postgresql
            args += ["--database-url", server.config.database_url]

        def sealed() -> bool:
            result = CliRunner().invoke(main, args, catch_exceptions=False)
            return (
                result.exit_code == 0
                and "unsealed" not in result.output
                and " 0 audit records" not in result.output
            )

        wait_until(sealed, "the server never sealed its audit trail", timeout=30, interval=0.5)
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    finally:
        server.stop()
