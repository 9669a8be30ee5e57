"""The server's composition: one OpenSSM node built from its components, and the commands that run it.

- ``composition``: every server-side component imported statically and wired together: the API,
  the message gateway with its node extensions (Run Command, session logging), the browser console.
  Nothing is found or loaded at run time, so mypy and import-linter see every edge.
- ``process``: opens the shared services (database, master key, bus), runs the application until
  stopped (SIGINT/SIGTERM) and closes them again;
- ``bootstrap``: the account's administrator, CLI profile files and node role, made on every start;
- ``cli``: ``openssm server``; ``quickstart``: ``openssm quickstart`` (server, agent and client as
  three processes).

The package sits on top of the server-side layers (pyproject.toml's layers contract); only the
``openssm`` command (``openssm.cli``) is above it.
"""
