"""Run OpenSSM's fuzz targets (atheris, coverage-guided) and report what a run found and covered.

    .venv/bin/python bench/fuzz.py --target smux --inputs 1000000
    .venv/bin/python bench/fuzz.py --target all --inputs 1000000 --update-corpus --lines

Each target runs in a process of its own (``python -m tests.fuzz.harness TARGET``), starting from
its kept corpus (``tests/fuzz/corpus/TARGET``) plus the target's seeds (captures, botocore-built
requests, hand-written policies), with a per-input time limit: an input that takes longer is a
hang. Printed per target: inputs run, edges covered (libFuzzer's ``cov``) and features (``ft``),
lines covered in the target's own modules (``--lines``: the final corpus replayed under
coverage.py), wall time and inputs per second, crashes, hangs, and for the API targets HTTP 500s.
A crash or hang stops that target's run; the input is kept under the work directory and shown.

``--update-corpus`` merges what the run found into the kept corpus, minimised by libFuzzer
(``-merge=1``: the smallest set of inputs with the same coverage). The machine is shared:
run targets one at a time, under ``nice``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzz.targets import TARGETS, Target  # noqa: E402

_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


@dataclasses.dataclass
class Result:
    target: str
    inputs: int = 0
    edges: int = 0
    features: int = 0
    corpus: int = 0
    seconds: float = 0.0
    crashes: int = 0
    hangs: int = 0
    http_500: int = 0
    lines: str = "-"
    artifact: str = ""
    excerpt: str = ""

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


def write_seeds(target: Target, directory: pathlib.Path) -> int:
    """The target's seeds (if it has any) as files named by content, as libFuzzer names them."""
    import importlib

    module = importlib.import_module(target.module)
    seeds = getattr(module, "seeds", None)
    if seeds is None:
        return 0
    count = 0
    for seed in seeds(target.name) if inspect.signature(seeds).parameters else seeds():
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        count += 1
    return count


def harness_command(target: Target, *options: str) -> list[str]:
    return [_python(), "-m", "tests.fuzz.harness", target.name, f"-max_len={target.max_len}", *options]


def run(
    target: Target, inputs: int, timeout: int, work: pathlib.Path, nice: int, max_time: int = 0
) -> Result:
    new_corpus = work / "corpus"
    artifacts = work / "artifacts"
    seeds = work / "seeds"
    for directory in (new_corpus, artifacts, seeds):
        directory.mkdir(parents=True, exist_ok=True)
    write_seeds(target, seeds)
    target.corpus.mkdir(parents=True, exist_ok=True)
    command = harness_command(
        target,
        f"-runs={inputs}",
        f"-timeout={timeout}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        *([f"-max_total_time={max_time}"] if max_time else []),
        str(new_corpus),
        str(target.corpus),
        str(seeds),
    )
    if nice:
        command = ["nice", "-n", str(nice), *command]
    log_path = work / "fuzz.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        completed = subprocess.run(command, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    result = Result(target.name, seconds=time.monotonic() - started)
    text = log_path.read_text(errors="replace")
    for line in text.splitlines():
        match = _STATUS.match(line)
        if match:
            result.inputs = int(match.group(1))
            result.edges, result.features, result.corpus = (int(match.group(i)) for i in (3, 4, 5))
        done = _DONE.search(line)
        if done:
            result.inputs = int(done.group(1))
    if "ERROR: libFuzzer: timeout" in text:
        result.hangs = 1
    elif completed.returncode != 0:
        result.crashes = 1
        if "ServerError: HTTP 5" in text:
            result.http_500 = 1
    if completed.returncode != 0:
        found = sorted(artifacts.iterdir())
        result.artifact = str(found[0]) if found else ""
        marker = text.find("=== Uncaught Python exception")
        result.excerpt = text[marker : marker + 4000] if marker >= 0 else text[-4000:]
    return result


def measure_lines(target: Target, directories: list[pathlib.Path], work: pathlib.Path) -> str:
    """Lines of the target's own modules run by replaying ``directories`` under coverage.py."""
    data = work / ".coverage"
    include = ",".join(f"*/src/{source}*" for source in target.sources)
    replay = [
        _python(),
        "-m",
        "coverage",
        "run",
        f"--data-file={data}",
        "--branch",
        f"--include={include}",
        "-m",
        "tests.fuzz.replay",
        target.name,
        *map(str, directories),
    ]
    subprocess.run(
        replay, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    report = subprocess.run(
        [_python(), "-m", "coverage", "report", f"--data-file={data}", "--format=total", "--precision=1"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    json_out = work / "coverage.json"
    subprocess.run(
        [_python(), "-m", "coverage", "json", f"--data-file={data}", "-o", str(json_out), "-q"],
        cwd=ROOT,
        env=_env(),
        check=True,
    )
    import json

    totals = json.loads(json_out.read_text())["totals"]
    return f"{totals['covered_lines']}/{totals['num_statements']} ({report.stdout.strip()}% with branches)"


def update_corpus(target: Target, work: pathlib.Path) -> int:
    """Replace the kept corpus by a minimised merge of it and what the run found."""
    merged = work / "merged"
    merged.mkdir(exist_ok=True)
    command = harness_command(
        target,
        "-merge=1",
        f"-artifact_prefix={work}/artifacts/",
        str(merged),
        str(target.corpus),
        str(work / "corpus"),
        str(work / "seeds"),
    )
    subprocess.run(
        command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    shutil.rmtree(target.corpus, ignore_errors=True)
    shutil.copytree(merged, target.corpus)
    return len(list(target.corpus.iterdir()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", required=True, help=f"one of {', '.join(TARGETS)}, or all")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs to run (default 10^6)")
    parser.add_argument(
        "--timeout", type=int, default=10, help="seconds per input before it counts as a hang"
    )
    parser.add_argument(
        "--max-time", type=int, default=0, help="stop a target after this many seconds (0: no limit)"
    )
    parser.add_argument("--nice", type=int, default=10, help="nice level of the fuzzing process (0: none)")
    parser.add_argument("--lines", action="store_true", help="measure line coverage of the final corpus")
    parser.add_argument("--update-corpus", action="store_true", help="merge findings into tests/fuzz/corpus")
    parser.add_argument("--work-dir", type=pathlib.Path, help="keep logs, corpus and artifacts here")
    args = parser.parse_args()
    names = list(TARGETS) if args.target == "all" else [args.target]
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r}; targets: {', '.join(TARGETS)}")
    base = args.work_dir or pathlib.Path(tempfile.mkdtemp(prefix="openssm-fuzz-"))
    print("machine shared with other work: rates and times are indicative only", flush=True)
    header = f"{'target':<13} {'inputs':>9} {'edges':>6} {'feat':>6} {'corpus':>6} {'time s':>8} {'in/s':>7} {'crash':>5} {'hang':>4} {'500s':>4}  lines"
    print(header, flush=True)
    failed = False
    for name in names:
        target = TARGETS[name]
        work = base / name
        result = run(target, args.inputs, args.timeout, work, args.nice, args.max_time)
        if args.lines and not result.crashes and not result.hangs:
            result.lines = measure_lines(target, [work / "corpus", target.corpus, work / "seeds"], work)
        if args.update_corpus and not result.crashes and not result.hangs:
            update_corpus(target, work)
        print(
            f"{name:<13} {result.inputs:>9} {result.edges:>6} {result.features:>6} {result.corpus:>6} "
            f"{result.seconds:>8.0f} {result.rate:>7.0f} {result.crashes:>5} {result.hangs:>4} "
            f"{result.http_500:>4}  {result.lines}",
            flush=True,
        )
        if result.crashes or result.hangs:
            failed = True
            print(f"  input: {result.artifact}\n  log: {work / 'fuzz.log'}\n{result.excerpt}", flush=True)
    print(f"work directory: {base}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
