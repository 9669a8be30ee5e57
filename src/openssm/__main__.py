"""The ``openssm`` command (the console script, and ``python -m openssm``).

``openssm start-session`` with a plain command line starts without importing click, which was
about a third of the client's work before StartSession went out (see :mod:`openssm.client.cli`);
every other command line, and any that the fast path leaves alone, goes to the click group.
"""

import sys


def run() -> None:
    if sys.argv[1:2] == ["start-session"]:
        from openssm.client.cli import fast_start_session

        fast_start_session(sys.argv[2:])  # returns only if click should take the command line
    from openssm.cli import main

    main()


if __name__ == "__main__":
    run()
