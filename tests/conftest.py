"""Suite-wide fixtures and the rule for tests that need outside services.

In CI (env CI=true) a test that needs PostgreSQL, Redis, sshd, Chromium, Go or the AWS captures
FAILS when that thing is missing; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import pathlib

import pytest

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
