"""A server holding a fleet's connections tunes Python's collector once it is listening
(``server.process.tune_collector``): start-up's objects frozen out of every collection, and a young
threshold high enough that a request's short-lived objects die by reference count before a young
collection promotes them towards the full collections that walked every connection's objects."""

from __future__ import annotations

import json
import subprocess
import sys

from openssm.server.process import GC_YOUNG_THRESHOLD

PROBE = """
import gc, json
from openssm.server.process import tune_collector
before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
tune_collector()
gc.collect(0)
print(json.dumps({"before": before, "after": {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}}))
"""


def test_the_collector_is_tuned_once_the_server_has_started() -> None:
    # A fresh interpreter: the test process's own collector is left as it is.
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(probe.stdout)
    assert seen["before"]["frozen"] == 0 and seen["before"]["threshold"][0] < GC_YOUNG_THRESHOLD
    after = seen["after"]
    assert after["threshold"] == [GC_YOUNG_THRESHOLD, *seen["before"]["threshold"][1:]]
    # Everything start-up made (modules, classes: tens of thousands of objects) is frozen.
    assert after["frozen"] > 10_000
