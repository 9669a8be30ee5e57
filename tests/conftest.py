"""Suite-wide fixtures and the rule for tests that need outside services.

In CI (env CI=true) a test that needs PostgreSQL, Redis, sshd, Chromium, Go or the AWS captures
FAILS when that thing is missing; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import settings

# Hypothesis times each example by the wall clock against a deadline (200 ms by default). On the
# 2-core CI with two workers, and with other jobs on the machine, a 20-70 ms example is now and then
# descheduled past it (seen in test_asciicast and test_protocol_messages: DeadlineExceeded, or Flaky
# when the rerun is fast). The deadline stays, as a bound on a pathological example, at a value
# scheduling jitter does not reach; a test that needs another sets its own.
settings.register_profile("openssm", deadline=dt.timedelta(seconds=2))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "openssm"))

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip (outside CI) or fail (in CI) when a needed outside thing is missing."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.requires(condition, reason)``: the marker form of :func:`require`."""
    for marker in item.iter_markers("requires"):
        require(bool(marker.args[0]), str(marker.args[1]))


def captures_dir() -> pathlib.Path:
    configured = os.environ.get("OPENSSM_CAPTURES")
    if configured:
        return pathlib.Path(configured)
    return REPO_ROOT / "tests" / "captures"


@pytest.fixture(scope="session")
def captures() -> pathlib.Path:
    path = captures_dir()
    require(path.is_dir(), f"AWS wire captures not found at {path} (set OPENSSM_CAPTURES)")
    return path


SSM_USER_ENV = "OPENSSM_AGENT_SSM_USER"


@pytest.fixture(scope="session", autouse=True)
def _own_default_session_account() -> Iterator[str]:
    """A root agent creates ``ssm-user`` for sessions without a run-as user. Agents started by the
    tests (in-process or as processes, which inherit the environment) use an account named for
    this test run instead, so the machine's own ``ssm-user`` is never created or changed; it is
    removed at the end if a test created it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    name = f"ossmt-{worker}-{secrets.token_hex(3)}"[:32]
    previous = os.environ.get(SSM_USER_ENV)
    os.environ[SSM_USER_ENV] = name
    try:
        yield name
    finally:
        if previous is None:
            os.environ.pop(SSM_USER_ENV, None)
        else:
            os.environ[SSM_USER_ENV] = previous
        remove_test_account(name)


def remove_test_account(name: str) -> None:
    """Delete an account (and its home) that the tests created; nothing else is ever removed."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return
    if entry.pw_uid != 0 and entry.pw_gecos == "OpenSSM session user" and os.geteuid() == 0:
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)


@contextmanager
def throwaway_account_name(prefix: str) -> Iterator[str]:
    """A fresh account name for a test that makes a root agent create its default account; the
    account (if created) is removed afterwards. Needs root (the suite runs as root in CI)."""
    require(os.geteuid() == 0, "creating accounts needs root")
    name = f"{prefix}-{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        remove_test_account(name)
