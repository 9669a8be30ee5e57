"""Every module that defines API operations, imported statically: importing this module registers
them all with :mod:`openssm.api.registry`. A module named here that does not exist fails at import;
one that defines operations but is not reached from here fails ``tests/unit/api/test_handlers.py``."""

from __future__ import annotations

from openssm.api import (  # noqa: F401 - imported for their registrations
    access,
    audit,
    commands,
    documents,
    iam,
    session_join,
    ssm,
    ssm_agent,
    ssm_node_admin,
    ssm_sessions,
    sts,
)
