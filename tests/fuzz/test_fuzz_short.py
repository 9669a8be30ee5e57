"""The short fuzz run of CI: every target replays its kept corpus, then fuzzes for a few seconds.

A crash, a hang (10 s per input) or an HTTP 500 fails the test with the input and the traceback.
Long runs (10^6 inputs per target) are ``bench/fuzz.py``'s job, outside CI.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.fuzz.targets import TARGETS

FUZZ_SECONDS = {"api_json": 3, "api_query": 3}
DEFAULT_SECONDS = 1


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_survives_its_corpus_and_a_short_run(name: str, tmp_path: pathlib.Path) -> None:
    target = TARGETS[name]
    kept = sorted(target.corpus.iterdir()) if target.corpus.is_dir() else []
    assert kept, f"no corpus kept for {name} in {target.corpus}"
    new = tmp_path / "new"
    new.mkdir()
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.harness",
        name,
        f"-max_len={target.max_len}",
        f"-max_total_time={FUZZ_SECONDS.get(name, DEFAULT_SECONDS)}",
        "-timeout=10",
        f"-artifact_prefix={tmp_path}/",
        str(new),
        str(target.corpus),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"fuzz target {name} failed:\n{output[-6000:]}"
    assert "INITED" in output, output[-3000:]
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))]
    assert not crashes, crashes
