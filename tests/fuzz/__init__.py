"""Coverage-guided fuzzing of OpenSSM's parsers and API (atheris, libFuzzer's engine).

``targets.py`` names each target; ``harness.py`` runs one under atheris in a process of its own;
``bench/fuzz.py`` drives long runs and reports figures; ``test_fuzz_short.py`` is the short CI run.
The corpus of each target is kept in ``corpus/<target>/``.
"""
