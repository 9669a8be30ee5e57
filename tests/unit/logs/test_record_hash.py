"""An audit row's hash is part of the chain every existing database stores: it must not change."""

from __future__ import annotations

import datetime as dt

from openssm.logs.integrity import record_hash
from openssm.store.audit_log import AuditRow


def test_an_audit_rows_hash_is_the_one_existing_chains_were_sealed_with() -> None:
    row = AuditRow(
        7,
        dt.datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=dt.UTC),
        "arn:aws:sts::000000000000:assumed-role/SSMRole/mi-0123456789abcdef0",
        "ssm:UpdateInstanceInformation",
        "arn:aws:ssm:us-east-1:000000000000:managed-instance/mi-0123456789abcdef0",
        "allowed",
        "SSMRole/policy#0",
        None,
        {"agentVersion": "3.3.0", "platform": {"name": "Ubuntu", "versions": ["24", "04"]}, "n": 1.5},
    )
    # Computed with dataclasses.asdict, as rows were hashed before record_hash read the columns directly.
    assert record_hash(row) == "dd0e47026f6025a9cc4f749db3ab318f8096ff73510aa725477cea488a2b51e7"
