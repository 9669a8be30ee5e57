"""The ``openssm`` command (the console script, and ``python -m openssm``).

``openssm start-session`` with a plain command line starts without importing click, which was
about a third of the client's work before StartSession went out (see :mod:`openssm.client.cli`);
``openssm agent run`` likewise (:mod:`openssm.agent.main`: a node's agent keeps what it imported
resident for months); every other command line, and any that a fast path leaves alone, goes to the
click group.
"""

import sys


def run() -> None:
    if sys.argv[1:2] == ["start-session"]:
        from openssm.client.cli import fast_start_session

        fast_start_session(sys.argv[2:])  # returns only if click should take the command line
    elif sys.argv[1:3] == ["agent", "run"]:
        from openssm.agent.main import fast_run

        fast_run(sys.argv[3:])  # likewise
    from openssm.cli import main

    main()


if __name__ == "__main__":
    run()
