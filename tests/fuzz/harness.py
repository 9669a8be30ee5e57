"""Run one fuzz target under atheris: ``python -m tests.fuzz.harness TARGET [libFuzzer options] [DIR…]``.

OpenSSM's modules are imported inside ``atheris.instrument_imports`` so that their bytecode reports
coverage to libFuzzer; everything else (the standard library, aiohttp) is not instrumented.
A target module's ``setup`` may take the target's name (one module serves api_json and api_query).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import pathlib
import shlex
import sys
import tempfile

import atheris  # type: ignore[import-untyped]

from tests.fuzz.targets import TARGETS


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: {argv[0]} TARGET [libFuzzer options]; targets: {', '.join(TARGETS)}")
    target = TARGETS[argv[1]]
    with atheris.instrument_imports(include=["openssm"]):
        module = importlib.import_module(target.module)
    setup = module.setup
    one_input = setup(target.name) if inspect.signature(setup).parameters else setup()
    atheris.Setup([_self_command(target.name), *argv[2:]], one_input)
    atheris.Fuzz()


def _self_command(name: str) -> str:
    """An executable that runs this harness for ``name``: libFuzzer's merge runs argv[0] again."""
    command = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "tests.fuzz.harness", name))
    digest = hashlib.sha256(f"{command} {os.getcwd()}".encode()).hexdigest()[:12]
    script = pathlib.Path(tempfile.gettempdir()) / f"openssm-fuzz-{name}-{digest}.sh"
    script.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    script.chmod(0o700)
    return str(script)


if __name__ == "__main__":
    main(sys.argv)
