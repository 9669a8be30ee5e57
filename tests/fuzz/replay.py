"""Run a fuzz target's ``one_input`` over corpus directories, uninstrumented (for line coverage
with coverage.py, and to reproduce an input): ``python -m tests.fuzz.replay TARGET DIR|FILE …``."""

from __future__ import annotations

import importlib
import inspect
import pathlib
import sys

from tests.fuzz.targets import TARGETS


def main(argv: list[str]) -> None:
    target = TARGETS[argv[1]]
    module = importlib.import_module(target.module)
    setup = module.setup
    one_input = setup(target.name) if inspect.signature(setup).parameters else setup()
    for argument in argv[2:]:
        path = pathlib.Path(argument)
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        for file in files:
            one_input(file.read_bytes())


if __name__ == "__main__":
    main(sys.argv)
