"""Session start-up latency and keystroke echo, measured side by side in one run.

Start to prompt, as a user sees it: from starting the process (or clicking Start in the browser)
to the first byte of the remote shell's prompt on the terminal, for

- a local login shell on a PTY (the same account and shell the sessions run as: the floor),
- ``ssh`` to a local sshd (the same account),
- ``openssm start-session`` (OpenSSM's client),
- ``ssh`` through the ProxyCommand with ``openssm start-session`` (AWS-StartSSHSession),
- ``aws ssm start-session`` (the real AWS CLI) exec'ing OpenSSM's ``session-manager-plugin``,
- the browser console (Playwright on /usr/bin/chromium): click on "Start session" to prompt, as a
  returning user sees it (the browser keeps its cache; one unmeasured click warms it first),
- StartSession → first byte with a minimal data-channel client in this process (server only).

Each repetition runs every variant once, in turn, so they share the machine's noise; medians and
ranges are printed side by side. The per-step breakdown comes from the client's own marks
(``OPENSSM_CLIENT_TRACE``, see ``openssm.client.trace``) and the agent's log, lined up on
CLOCK_MONOTONIC (one clock for every process on the machine), and the server's steps from its
database trace (``OPENSSM_DB_TRACE``: when each step ended, and its statements, commits and
connection checkouts, printed after the breakdown).

Wall time on a shared machine is mostly waiting for a CPU, so each variant also prints the CPU time
(user + sys) of the process it started, for the whole session (``wait4``: with the children it
waited for), and the server's and the agent's CPU time over each session (``/proc``, in clock ticks,
the agent's with the shell it started): far less load-sensitive than the wall times.

Sessions run as one account with an ordinary login profile (``--run-as``; as root the default is
the first account with uid >= 1000 and a real shell), because a heavy profile (pyenv, conda…) in
root's ``.bashrc`` would dominate every figure alike.

Keystroke echo round trip (p50/p99) through client → gateway → agent PTY and back, beside the
same keystrokes through ``ssh`` and a direct local PTY.

`--client-rev REV` adds the client from another revision (e.g. the commit before a change) to the
same run, in turn with the working tree's: the before and after under the same conditions.

Run: `.venv/bin/python bench/bench_session_latency.py [--sessions N] [--keys N] [--no-browser] [--only TEXT]
[--client-rev REV]`
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import pathlib
import pty
import pwd
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.harness import Agent, Server
from tests.support.fleet import ShellClient
from tests.support.sshd import SshServer, run_sshd, sshd_available
from tests.support.stats import percentile

from openssm.client.trace import TRACE_ENV
from openssm.protocol.frames import PayloadType
from openssm.store.trace import TRACE_ENV as DB_TRACE_ENV

BIN = pathlib.Path(sys.executable).parent
ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = pathlib.Path("/usr/bin/chromium")
STARTING = re.compile(rb"Starting session with SessionId: (\S+)\r?\n")
TIMEOUT = 20.0
NO_LOGIN = ("nologin", "false")
T = TypeVar("T")


# -- a process on a PTY ----------------------------------------------------------------------------


class PtyChild:
    """A command on a fresh PTY; ``started`` is CLOCK_MONOTONIC just before the fork."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        account: pwd.struct_passwd | None = None,
        cwd: str | None = None,
    ) -> None:
        self.started = time.monotonic()
        pid, fd = pty.fork()
        if pid == 0:  # the child: become the account (if any), then exec
            try:
                if account is not None and os.geteuid() != account.pw_uid:
                    os.initgroups(account.pw_name, account.pw_gid)
                    os.setgid(account.pw_gid)
                    os.setuid(account.pw_uid)
                if cwd:
                    os.chdir(cwd)
                os.execve(argv[0] if "/" in argv[0] else shutil.which(argv[0]) or argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.seen = b""
        self.cpu: float | None = None  # user + sys seconds of the process (and the children it waited for)

    def read_until(self, predicate: Callable[[bytes], bool], timeout: float = TIMEOUT) -> float:
        """Read until ``predicate(all bytes so far)``; returns CLOCK_MONOTONIC when it became true."""
        deadline = time.monotonic() + timeout
        while not predicate(self.seen):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out; output so far: {self.seen[-600:]!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise EOFError(f"the process ended; output: {self.seen[-600:]!r}")
                self.seen += chunk
        return time.monotonic()

    def first_byte_after(self, pattern: re.Pattern[bytes] | None) -> float:
        """CLOCK_MONOTONIC of the first byte after ``pattern`` (or of the very first byte)."""
        if pattern is None:
            return self.read_until(lambda seen: bool(seen))
        return self.read_until(lambda seen: (m := pattern.search(seen)) is not None and m.end() < len(seen))

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def check_shell(self) -> None:
        """The prompt was a working shell's: it runs a command."""
        self.write(b"echo CHECK-$((6*7))\r")
        self.read_until(lambda seen: b"CHECK-42" in seen)

    def finish(self, exit_input: bytes | None = b"exit\r", timeout: float = 10.0) -> None:
        """Ask the shell to exit, wait for the process; kill it if it does not go."""
        if exit_input == b"exit\r":
            self.check_shell()
        if exit_input:
            with contextlib.suppress(OSError):
                self.write(exit_input)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, _, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.cpu = usage.ru_utime + usage.ru_stime
                break
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                with contextlib.suppress(OSError):
                    os.read(self.fd, 65536)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


# Around the keystrokes of an echo measurement alone (compare_session_latency.py counts the
# processes' CPU and context switches in it).
Around = Callable[[], contextlib.AbstractContextManager[None]]


def echo_rtts(
    child: PtyChild, keys: int, ready: bytes = b"READY", around: Around = contextlib.nullcontext
) -> list[float]:
    """Type ``keys`` single characters into a ``stty -icanon -echo; cat`` and time each echo."""
    child.write(b"stty -icanon -echo; echo RE''ADY; exec cat\r")
    child.read_until(lambda seen: ready in seen)
    child.read_until(lambda seen: seen.endswith(b"\n"), timeout=2.0)
    samples = []
    with around():
        for i in range(keys):
            key = bytes([ord("a") + i % 26])
            child.seen = b""
            start = time.perf_counter()
            child.write(key)
            child.read_until(lambda seen, key=key: key in seen)  # type: ignore[misc]
            samples.append(time.perf_counter() - start)
    return samples


# -- the accounts and environments -------------------------------------------------------------------


def pick_account(name: str | None) -> pwd.struct_passwd:
    if name:
        return pwd.getpwnam(name)
    me = pwd.getpwuid(os.geteuid())
    if me.pw_uid != 0:
        return me
    for entry in sorted(pwd.getpwall(), key=lambda e: e.pw_uid):
        shell_ok = os.access(entry.pw_shell, os.X_OK) and not entry.pw_shell.endswith(NO_LOGIN)
        if entry.pw_uid >= 1000 and entry.pw_uid != 65534 and shell_ok and os.path.isdir(entry.pw_dir):
            return entry
    return me


def login_env(account: pwd.struct_passwd) -> dict[str, str]:
    """The environment the agent gives a run-as session (``agent/sessions/identity.py``)."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "SHELL": account.pw_shell,
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
    }


def client_env(server: Server, trace: pathlib.Path, source: pathlib.Path | None = None) -> dict[str, str]:
    """The client's environment; ``source``: another revision's ``src`` to run the client from."""
    env = server.aws_env()
    env.update(PATH=f"{BIN}:{env['PATH']}", TERM="xterm-256color", LANG="C.UTF-8")
    env[TRACE_ENV] = str(trace)
    env.pop("OPENSSM_PLUGIN_LOG", None)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


# -- marks: the client's trace and the agent's log -----------------------------------------------------


@dataclasses.dataclass
class Run:
    total: float  # seconds from the start (process or click) to the first prompt byte
    steps: dict[str, float] = dataclasses.field(default_factory=dict)  # step -> seconds since the start
    cpu: float | None = None  # user + sys seconds of the process started, for the whole session
    server_cpu: float | None = None  # the server's and the agent's (with the shell), for the whole session
    agent_cpu: float | None = None


def process_cpu(pid: int) -> float:
    """User + sys seconds of a running process and of the children it has waited for (/proc, in ticks)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def read_trace(path: pathlib.Path) -> list[tuple[int, str, float]]:
    """(pid, step, CLOCK_MONOTONIC seconds) lines written since the last call; the file is emptied."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    path.write_text("")
    marks = []
    for line in lines:
        pid, step, ns = line.split()
        marks.append((int(pid), step, int(ns) / 1e9))
    return marks


class ProcessLogs:
    """New lines of the agent's and the server's logs: when the agent got a session request and
    spawned the shell, and when each of the server's steps on the way ended (its database trace,
    ``OPENSSM_DB_TRACE``, with what each step asked of the database)."""

    TIME = r"^(\S+ \S+) INFO "
    AGENT = (
        ("agent: session request", re.compile(TIME + r"openssm\.agent\.runner: session (\S+): ")),
        (
            "agent: shell spawned",
            re.compile(TIME + r"openssm\.agent\.sessions\.shell: session (\S+): .* started as "),
        ),
    )
    SERVER = re.compile(
        TIME + r"openssm\.store\.trace: db trace: (\S+) (\S+) (\S+): (\d+) statements, (\d+) commits, "
        r"(\d+) checkouts, ([\d.]+) ms"
    )  # fmt: skip
    # Server steps as the breakdown names them (surface, name) → label; others are left out.
    SERVER_STEPS = {
        ("api", "ssm:StartSession"): "server: StartSession done",
        ("data-channel", "client-open"): "server: client token used",
        ("data-channel", "client-join"): "server: client joined, shell asked for",
        ("mgs", "ssmmessages:CreateDataChannel"): "server: CreateDataChannel done",
        ("data-channel", "agent-authenticate"): "server: agent upgrade authenticated",
        ("data-channel", "agent-open"): "server: agent authorised, token used",
        ("data-channel", "agent-join"): "server: agent joined",
    }

    def __init__(self, agent: pathlib.Path, server: pathlib.Path) -> None:
        self.paths = {"agent": agent, "server": server}
        self.offsets = {"agent": 0, "server": 0}
        # The logs' times are local wall-clock times (ms); this maps them to CLOCK_MONOTONIC.
        self.wall_minus_mono = time.time() - time.monotonic()
        # What each server step asked of the database: label → [(statements, commits, checkouts, ms)].
        self.db_work: dict[str, list[tuple[int, int, int, float]]] = {}

    def _new_lines(self, which: str) -> list[str]:
        text = self.paths[which].read_text(errors="replace")
        new, self.offsets[which] = text[self.offsets[which] :], len(text)
        return new.splitlines()

    def _mono(self, stamp: str) -> float:
        return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() - self.wall_minus_mono

    def new_events(self) -> dict[str, float]:
        events: dict[str, float] = {}
        for line in self._new_lines("agent"):
            for name, pattern in self.AGENT:
                match = pattern.match(line)
                if match and name not in events:
                    events[name] = self._mono(match.group(1))
        for line in self._new_lines("server"):
            match = self.SERVER.match(line)
            if match is None:
                continue
            stamp, surface, name, _key, statements, commits, checkouts, millis = match.groups()
            label = self.SERVER_STEPS.get((surface, name))
            if label is None or label in events:
                continue
            events[label] = self._mono(stamp)
            work = (int(statements), int(commits), int(checkouts), float(millis))
            self.db_work.setdefault(label, []).append(work)
        return events

    def report(self) -> None:
        if not self.db_work:
            return
        print("\nServer steps on the way to the prompt: database work (median of each)")
        print(f"  {'step':<42} {'statements':>10} {'commits':>8} {'checkouts':>10} {'ms':>7}")
        for label in self.SERVER_STEPS.values():
            work = self.db_work.get(label)
            if work:
                medians = [statistics.median(column) for column in zip(*work, strict=True)]
                print(
                    f"  {label:<42} {medians[0]:>10g} {medians[1]:>8g} {medians[2]:>10g} {medians[3]:>7.1f}"
                )


# -- the variants ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    server: Server
    agent: Agent
    instance_id: str
    account: pwd.struct_passwd
    sshd: SshServer | None
    trace: pathlib.Path
    logs: ProcessLogs
    workdir: pathlib.Path


CLIENT_STEPS = {
    "start": "interpreter up, plugin module loaded",
    "ready": "arguments parsed (click and the CLI imported)",
    "credentials": "credentials and settings resolved",
    "start_session": "StartSession answered",
    "imports": "session machinery imported",
    "dial": "data channel open (upgraded)",
}


def client_steps(ctx: Context, started: float, pids: set[int] | None = None) -> dict[str, float]:
    steps: dict[str, float] = {}
    for pid, step, when in read_trace(ctx.trace):
        if pids is not None and pid not in pids:
            continue
        label = CLIENT_STEPS.get(step, step)
        if label not in steps:
            steps[label] = when - started
    for name, when in ctx.logs.new_events().items():
        steps[name] = when - started
    return steps


def run_local_shell(ctx: Context) -> Run:
    shell = ctx.account.pw_shell
    child = PtyChild([shell, "-l"], login_env(ctx.account), ctx.account, ctx.account.pw_dir)
    first = child.first_byte_after(None)
    child.finish()
    return Run(first - child.started, cpu=child.cpu)


def ssh_localhost(ctx: Context) -> PtyChild:
    assert ctx.sshd is not None
    argv = [
        shutil.which("ssh") or "ssh",
        "-tt",
        *ctx.sshd.client_options("-p"),
        f"{ctx.account.pw_name}@127.0.0.1",
    ]
    return PtyChild(
        argv, {"PATH": os.environ["PATH"], "TERM": "xterm-256color", "HOME": os.environ.get("HOME", "/")}
    )


def run_ssh_localhost(ctx: Context) -> Run:
    child = ssh_localhost(ctx)
    first = child.first_byte_after(None)
    child.finish()
    return Run(first - child.started, cpu=child.cpu)


def start_session_argv(ctx: Context, *program: str) -> list[str]:
    """``openssm start-session`` or ``aws ssm start-session`` into the node."""
    return [*program, "start-session", "--target", ctx.instance_id, "--endpoint-url", ctx.server.endpoint]


def openssm_shell(ctx: Context, trace: pathlib.Path, source: pathlib.Path | None = None) -> PtyChild:
    return PtyChild(start_session_argv(ctx, str(BIN / "openssm")), client_env(ctx.server, trace, source))


def run_openssm(ctx: Context, source: pathlib.Path | None = None) -> Run:
    read_trace(ctx.trace)
    ctx.logs.new_events()
    child = openssm_shell(ctx, ctx.trace, source)
    first = child.first_byte_after(STARTING)
    child.finish()
    return Run(first - child.started, client_steps(ctx, child.started), cpu=child.cpu)


def proxy_command(ctx: Context) -> str:
    return (
        f"{BIN / 'openssm'} start-session --target %h --document-name AWS-StartSSHSession "
        f"--parameters portNumber=%p --endpoint-url {ctx.server.endpoint}"
    )


def run_ssh_proxycommand(ctx: Context, source: pathlib.Path | None = None) -> Run:
    assert ctx.sshd is not None
    read_trace(ctx.trace)
    ctx.logs.new_events()
    argv = [
        shutil.which("ssh") or "ssh", "-tt", *ctx.sshd.client_options("-p"),
        "-o", f"ProxyCommand={proxy_command(ctx)}", f"{ctx.account.pw_name}@{ctx.instance_id}",
    ]  # fmt: skip
    child = PtyChild(argv, client_env(ctx.server, ctx.trace, source))
    first = child.first_byte_after(None)
    child.finish()
    return Run(first - child.started, client_steps(ctx, child.started), cpu=child.cpu)


PLUGIN_START = f"plugin: {CLIENT_STEPS['start']}"


def run_aws_cli(ctx: Context, source: pathlib.Path | None = None) -> Run:
    read_trace(ctx.trace)
    ctx.logs.new_events()
    argv = start_session_argv(ctx, str(BIN / "aws"), "ssm")
    child = PtyChild(argv, client_env(ctx.server, ctx.trace, source))
    first = child.first_byte_after(STARTING)
    child.finish()
    marks = read_trace(ctx.trace)
    steps: dict[str, float] = {}
    by_pid: dict[int, list[tuple[str, float]]] = {}
    for pid, step, when in marks:
        by_pid.setdefault(pid, []).append((step, when))
    for entries in by_pid.values():
        names = [step for step, _ in entries]
        prefix = "plugin --version" if "version" in names else "plugin"
        for step, when in entries:
            steps.setdefault(f"{prefix}: {CLIENT_STEPS.get(step, step)}", when - child.started)
    for name, when in ctx.logs.new_events().items():
        steps[name] = when - child.started
    return Run(first - child.started, steps, cpu=child.cpu)


# -- the browser -----------------------------------------------------------------------------------------

# Times are epoch milliseconds from performance.timeOrigin + now(): comparable across the two pages.
BROWSER_INIT = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest("a.start-session")) {
      sessionStorage.setItem("bench-click", String(now()));
    }
  }, true);
  if (!location.pathname.endsWith("/shell")) return;
  window.benchMarks = { loaded: null, wsOpen: null, firstMessage: null, rendered: null };
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener("open", () => { window.benchMarks.wsOpen = now(); });
    ws.addEventListener("message", (event) => {
      if (window.benchMarks.firstMessage === null && typeof event.data !== "string") {
        window.benchMarks.firstMessage = now();
      }
    });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  addEventListener("DOMContentLoaded", () => {
    window.benchMarks.loaded = now();
    const watch = new MutationObserver(() => {
      const rows = document.querySelector("#terminal .xterm-rows");
      if (rows && rows.innerText.replace(/\\u00a0/g, " ").trim() && window.benchMarks.rendered === null) {
        window.benchMarks.rendered = now();
        watch.disconnect();
      }
    });
    watch.observe(document.body, { childList: true, subtree: true, characterData: true });
  });
})();
"""


LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """/usr/bin/chromium under Playwright; each :class:`Browser` is a context (a profile) of it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Browser:
    """A signed-in console in its own browser context (its own cache and cookies).

    What it measures is a user who has opened a shell from this console before: the context keeps
    its HTTP cache from click to click, and one unmeasured click warms it (the shell page's scripts,
    xterm.js, the stylesheets), so every measured click loads the pages as a returning user does.
    """

    def __init__(self, ctx: Context, launched: Any) -> None:
        self.ctx = ctx
        self._context = launched.new_context(viewport={"width": 1280, "height": 800})
        self._context.add_init_script(BROWSER_INIT)
        self.page = self._context.new_page()
        key, secret = ctx.server.admin_credentials
        self.page.goto(f"{ctx.server.endpoint}/console/")
        self.page.fill("#access-key-id", key)
        self.page.fill("#secret-access-key", secret)
        self.page.click("#signin-button")
        self.page.wait_for_url("**/console/nodes")
        # Requests the shell page made over the network (not answered from the cache), per click.
        self.requests: list[int] = []
        self.run()  # the warm-up click: not counted
        self.requests.clear()

    def run(self) -> Run:
        page = self.page
        if not page.url.endswith("/console/nodes"):
            page.goto(f"{self.ctx.server.endpoint}/console/nodes")
        link = page.locator(f'tr[data-instance-id="{self.ctx.instance_id}"] a.start-session')
        link.wait_for()
        self.ctx.logs.new_events()
        wall_minus_mono = time.time() - time.monotonic()
        link.click()
        page.wait_for_url("**/console/shell?target=*")
        page.wait_for_function(
            "() => window.benchMarks && window.benchMarks.rendered !== null", timeout=TIMEOUT * 1000
        )
        marks = page.evaluate(
            """() => {
                const api = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/console/api/sessions"));
                const nav = performance.getEntriesByType("navigation")[0];
                return { click: Number(sessionStorage.getItem("bench-click")), origin: performance.timeOrigin,
                         api: api ? performance.timeOrigin + api.responseEnd : null,
                         document: performance.timeOrigin + nav.responseStart,
                         requests: performance.getEntriesByType("resource").filter((e) => e.transferSize > 0).length,
                         ...window.benchMarks };
            }"""
        )
        click = marks["click"]
        steps = {
            "page navigated": marks["origin"] - click,
            "document's first byte (server answered)": marks["document"] - click,
            "page loaded (DOMContentLoaded)": marks["loaded"] - click,
            "StartSession answered": (marks["api"] or click) - click,
            "data channel open": marks["wsOpen"] - click,
            "first output message": marks["firstMessage"] - click,
        }
        steps = {name: value / 1000 for name, value in steps.items()}
        for name, when in self.ctx.logs.new_events().items():
            steps[name] = when + wall_minus_mono - click / 1000
        self.requests.append(marks["requests"])
        page.keyboard.type("exit")
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-session-ended]", timeout=TIMEOUT * 1000)
        return Run((marks["rendered"] - click) / 1000, steps)

    def close(self) -> None:
        self._context.close()

    def report_requests(self, name: str) -> None:
        """How many requests the shell page sent over the network per click (StartSession included;
        what the browser answered from its cache not counted; the document itself not counted)."""
        if self.requests:
            print(f"  {name}: requests from the shell page over the network per click: "
                  f"median {statistics.median(self.requests):g} [{min(self.requests)} - {max(self.requests)}]")  # fmt: skip


# -- StartSession → first byte, and echo, with a minimal data-channel client in this process ------------


class ShellOutput:
    """A shell's output as it arrives (``ShellClient.on_output = output.feed``), taken up to and
    including each text waited for; what came after it stays for the next wait."""

    def __init__(self) -> None:
        self._arrived: asyncio.Queue[bytes] = asyncio.Queue()
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._arrived.put_nowait(data)

    async def any(self, timeout: float = 30.0) -> None:
        """Until some output has arrived (the first prompt byte)."""
        async with asyncio.timeout(timeout):
            self._pending += await self._arrived.get()

    async def until(self, needle: bytes, timeout: float = 10.0) -> bytes:
        """Wait for ``needle``; what came before it (its last 4 KiB at most) and the needle."""
        async with asyncio.timeout(timeout):
            while (at := self._pending.find(needle)) < 0:
                self._pending = self._pending[-4096:] + await self._arrived.get()
        taken, self._pending = self._pending[: at + len(needle)], self._pending[at + len(needle) :]
        return taken

    def discard(self) -> None:
        """Forget what has arrived and not been waited for."""
        while not self._arrived.empty():
            self._arrived.get_nowait()
        self._pending = b""


async def echo_rtts_shell(
    client: ShellClient, output: ShellOutput, keys: int, around: Around = contextlib.nullcontext
) -> list[float]:
    """Keystroke → echo round trips through ``dd bs=1 count=KEYS`` (each byte written as it is
    read) in the session's shell, which ends after the last key and leaves the shell at its prompt."""
    await client.send(
        f"stty -icanon -echo; echo RE''ADY; dd bs=1 count={keys} 2>/dev/null; stty sane; echo DO''NE\r".encode()
    )
    await output.until(b"READY")
    await asyncio.sleep(0.2)
    output.discard()
    samples: list[float] = []
    with around():
        for i in range(keys):
            key = bytes([ord("a") + i % 26])
            start = time.perf_counter()
            await client.send(key)
            await output.until(key)
            samples.append(time.perf_counter() - start)
    await output.until(b"DONE")
    return samples


async def in_process_session(
    ssm: Any, instance_id: str, keys: int, logs: ProcessLogs, around: Around = contextlib.nullcontext
) -> tuple[Run, list[float]]:
    """StartSession (boto3, client made beforehand), dial, open frame, first byte; then echo."""
    logs.new_events()
    started = time.monotonic()
    response = await asyncio.to_thread(ssm.start_session, Target=instance_id)
    answered = time.monotonic()
    async with aiohttp.ClientSession() as http:
        client = await ShellClient.open(http, response)
        dialled = time.monotonic()
        output = ShellOutput()
        client.on_output = output.feed
        await output.any()
        first = time.monotonic()
        steps = {"StartSession answered": answered - started, "data channel open": dialled - started}
        for name, when in logs.new_events().items():
            steps[name] = when - started
        samples: list[float] = []
        if keys:
            await client.send(b'{"cols":80,"rows":24}', PayloadType.SIZE)
            samples = await echo_rtts_shell(client, output, keys, around)
        await client.send(b"exit\r")
        await client.wait_closed(10)
    return Run(first - started, steps), samples


def in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps a loop running in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# -- the report ------------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f}"


def report(results: dict[str, list[Run]], floor: str) -> None:
    print("\nStart → first prompt byte (ms): median [min - max] of each; variants interleaved in one run")
    width = max(len(name) for name in results) + 2
    base = statistics.median(run.total for run in results[floor]) if results.get(floor) else None
    for name, runs in results.items():
        if not runs:
            continue
        totals = [run.total for run in runs]
        median = statistics.median(totals)
        extra = (
            f"   {(median - base) * 1000:+7.1f} over the local shell"
            if base is not None and name != floor
            else ""
        )
        print(f"  {name:<{width}} {ms(median)}  [{ms(min(totals))} - {ms(max(totals))}]{extra}")
        cpu = [run.cpu for run in runs if run.cpu is not None]
        if cpu:
            print(
                f"  {'  CPU of its process (user+sys), whole session':<{width}} {ms(statistics.median(cpu))}  [{ms(min(cpu))} - {ms(max(cpu))}]"
            )
        plugin = [run.total - run.steps[PLUGIN_START] for run in runs if PLUGIN_START in run.steps]
        if plugin:  # the target for the AWS CLI: its own start-up plus at most so much
            print(
                f"  {'  of which the plugin (first mark → prompt)':<{width}} {ms(statistics.median(plugin))}"
            )
    print("\n  server / agent CPU (user+sys, with the shell; whole session, 10 ms ticks): median [min - max]")
    for name, runs in results.items():
        if name == floor or not runs or runs[0].server_cpu is None:
            continue
        server = [run.server_cpu or 0.0 for run in runs]
        agent = [run.agent_cpu or 0.0 for run in runs]
        print(f"  {name:<{width}} server {ms(statistics.median(server))} [{ms(min(server))} - {ms(max(server))}]"
              f"   agent {ms(statistics.median(agent))} [{ms(min(agent))} - {ms(max(agent))}]")  # fmt: skip
    for name, runs in results.items():
        step_names: list[str] = []
        for run in runs:
            step_names.extend(step for step in run.steps if step not in step_names)
        if not step_names:
            continue
        print(f"\n  steps of {name} (median ms since start; step = since the step before)")
        rows = []
        for step in step_names:
            values = [run.steps[step] for run in runs if step in run.steps]
            rows.append((statistics.median(values), step))
        rows.append((statistics.median(run.total for run in runs), "first prompt byte"))
        rows.sort()
        before = 0.0
        for value, step in rows:
            print(f"    {step:<42} {ms(value)}   {ms(value - before)}")
            before = value


def report_ratios(results: dict[str, list[Run]], new: str, old: str) -> None:
    """Each variant run by two revisions (names ending in ``new`` and ``old``), round by round: the
    new one's start → prompt and CPU over the old one's (the two ran one after the other in each
    round, so they shared the machine's load); median and range over the rounds."""
    lines = []
    for name, old_runs in results.items():
        if not name.endswith(old) or (new_runs := results.get(name[: -len(old)] + new)) is None:
            continue
        pairs = list(zip(new_runs, old_runs, strict=False))
        for what, ratios in (
            ("start → prompt", [a.total / b.total for a, b in pairs]),
            ("CPU", [a.cpu / b.cpu for a, b in pairs if a.cpu and b.cpu]),
        ):
            if ratios:
                lines.append(
                    f"  {name[: -len(old)].strip() + ', ' + what:<48} {statistics.median(ratios):5.3f}"
                    f"  [{min(ratios):5.3f} - {max(ratios):5.3f}]  ({len(ratios)} rounds)"
                )
    if lines:
        print(f"\n{new.strip() or '[working tree]'} over {old.strip()}, round by round: median [min - max]")
        print("\n".join(lines))


def report_echo(echo: dict[str, list[float]]) -> None:
    print("\nKeystroke echo round trip (ms)")
    local = echo.get("local pty")
    for name, samples in echo.items():
        if not samples:
            continue
        line = f"  {name:<36} p50 {percentile(samples, 0.5) * 1000:6.2f}   p99 {percentile(samples, 0.99) * 1000:6.2f}"
        if local and name != "local pty":
            line += f"   ({percentile(samples, 0.5) / percentile(local, 0.5):5.1f}x / {percentile(samples, 0.99) / percentile(local, 0.99):5.1f}x local)"
        print(line)


def measure_echo(
    ctx: Context, ssm: Any, keys: int, sources: dict[str, pathlib.Path | None]
) -> dict[str, list[float]]:
    echo: dict[str, list[float]] = {}
    local = PtyChild(["/bin/sh"], login_env(ctx.account), ctx.account, ctx.account.pw_dir)
    echo["local pty"] = echo_rtts(local, keys)
    local.finish(b"\x03")
    if ctx.sshd is not None:
        ssh = ssh_localhost(ctx)
        echo["ssh localhost"] = echo_rtts(ssh, keys)
        ssh.finish(b"\x03")
    for label, source in sources.items():
        client = openssm_shell(ctx, ctx.workdir / "trace-echo", source)
        client.first_byte_after(STARTING)
        echo[f"openssm start-session{label}"] = echo_rtts(client, keys)
        client.finish(b"\x03")
    in_process = in_thread(in_process_session(ssm, ctx.instance_id, keys, ctx.logs))
    echo["in-process client (gateway + agent)"] = in_process[1]
    return echo


# -- the run ---------------------------------------------------------------------------------------------------


def compile_bytecode(source: pathlib.Path) -> None:
    """``__pycache__`` for every module under ``source`` (what ``pip install`` does for a wheel)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(source)], check=True, stdout=subprocess.DEVNULL
    )


@contextlib.contextmanager
def client_revision(rev: str | None) -> Iterator[dict[str, pathlib.Path | None]]:
    """Variant label suffix → the client's source: the working tree's, and REV's if asked for
    (checked out in a temporary git worktree, put first on the client processes' PYTHONPATH).

    Each source tree is compiled to bytecode first, as an installed package is: with
    ``PYTHONDONTWRITEBYTECODE`` set (as in some test environments) every process would otherwise
    compile its modules from source at each start, which took about a third of the client's start-up.
    """
    compile_bytecode(ROOT / "src")
    if rev is None:
        yield {"": None}
        return
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        worktree = pathlib.Path(tmp) / "rev"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), commit],
                       check=True, capture_output=True)  # fmt: skip
        compile_bytecode(worktree / "src")
        vendor = pathlib.Path("openssm/console/static/vendor")  # built, not committed: REV's console needs it
        if (ROOT / "src" / vendor).is_dir():
            shutil.copytree(ROOT / "src" / vendor, worktree / "src" / vendor)
        try:
            yield {"": None, f" [{commit}]": worktree / "src"}
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False
            )


def set_run_as(server: Server, account: pwd.struct_passwd) -> None:
    if os.geteuid() != 0 or account.pw_uid == 0:
        return
    content = {"schemaVersion": "1.0", "sessionType": "Standard_Stream",
               "inputs": {"runAsEnabled": True, "runAsDefaultUser": account.pw_name}}  # fmt: skip
    server.client("ssm").update_document(
        Name="SSM-SessionManagerRunShell", Content=json.dumps(content), DocumentVersion="$LATEST"
    )


@contextlib.contextmanager
def sshd_for(workdir: pathlib.Path, account: pwd.struct_passwd) -> Iterator[SshServer | None]:
    if not sshd_available():
        yield None
        return
    with run_sshd(workdir, use_pam=True) as sshd:
        # sshd reads authorized_keys as the account logging in.
        os.chmod(workdir, 0o711)
        os.chmod(workdir / "authorized_keys", 0o644)
        yield sshd


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=10, help="repetitions of each variant (default 10)")
    parser.add_argument("--keys", type=int, default=200, help="keystrokes per echo measurement (default 200)")
    parser.add_argument("--run-as", help="account the sessions run as (default: see above)")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser console")
    parser.add_argument("--no-aws", action="store_true", help="skip `aws ssm start-session`")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only the variants whose name contains TEXT (repeatable; the first variant, the "
        "local shell, always runs as the floor); --keys 0 skips the echo measurement",
    )
    parser.add_argument(
        "--client-rev",
        metavar="REV",
        help="also run the client (openssm start-session, the plugin) from git revision REV, in turn "
        "with the working tree's, against the same server and agent",
    )
    args = parser.parse_args()
    account = pick_account(args.run_as)

    with tempfile.TemporaryDirectory() as tmp, client_revision(args.client_rev) as sources:
        root = pathlib.Path(tmp)
        # The server logs each step's database work: the breakdown's server steps.
        server = Server(root / "server", env={**os.environ, DB_TRACE_ENV: "1"}).start()
        agent = Agent(server, root / "agent")
        browser: Browser | None = None
        launched = contextlib.ExitStack()
        try:
            instance_id = agent.register()
            agent.start()
            set_run_as(server, account)
            os.chmod(root, 0o711)  # the account's sshd login reads authorized_keys below it
            with sshd_for(root / "sshd", account) as sshd:
                logs = ProcessLogs(root / "agent" / "agent.log", root / "server" / "server.log")
                ctx = Context(
                    server,
                    agent,
                    instance_id,
                    account,
                    sshd,
                    root / "trace",
                    logs,
                    root,
                )
                variants: dict[str, Callable[[], Run]] = {
                    f"local shell ({os.path.basename(account.pw_shell)} -l)": lambda: run_local_shell(ctx),
                }
                if sshd is not None:
                    variants["ssh localhost"] = lambda: run_ssh_localhost(ctx)
                for label, source in sources.items():
                    variants[f"openssm start-session{label}"] = functools.partial(run_openssm, ctx, source)
                    if sshd is not None:
                        variants[f"ssh via ProxyCommand{label}"] = functools.partial(
                            run_ssh_proxycommand, ctx, source
                        )
                    if not args.no_aws and (BIN / "aws").exists():
                        variants[f"aws ssm start-session + plugin{label}"] = functools.partial(
                            run_aws_cli, ctx, source
                        )
                if not args.no_browser and CHROMIUM.exists():
                    browser = Browser(ctx, launched.enter_context(chromium()))
                    variants["browser: click → prompt"] = browser.run
                ssm = server.client("ssm")
                variants["in-process: StartSession → 1st byte"] = lambda: in_thread(
                    in_process_session(ssm, instance_id, 0, ctx.logs)
                )[0]
                floor = next(iter(variants))
                variants = {
                    name: variant
                    for name, variant in variants.items()
                    if name == floor or not args.only or any(text in name for text in args.only)
                }
                results: dict[str, list[Run]] = {name: [] for name in variants}
                pids = (server.process.proc.pid, agent.process.proc.pid)  # type: ignore[union-attr]
                for _ in range(args.sessions):
                    for name, variant in variants.items():
                        before = [process_cpu(pid) for pid in pids]
                        run = variant()
                        time.sleep(0.2)  # the session's end, on the server's and the agent's side
                        run.server_cpu, run.agent_cpu = (
                            process_cpu(pid) - b for pid, b in zip(pids, before, strict=True)
                        )
                        results[name].append(run)

                echo = measure_echo(ctx, ssm, args.keys, sources) if args.keys else {}
        finally:
            if browser is not None:
                browser.close()
                browser.report_requests("browser: click → prompt")
            launched.close()
            agent.stop()
            server.stop()

    print(f"Sessions run as {account.pw_name} ({account.pw_shell}); {args.sessions} repetitions; "
          f"{os.cpu_count()} CPUs, shared with whatever else runs (compare within this run only)")  # fmt: skip
    report(results, next(iter(results)))
    for label in sources:
        if label:
            report_ratios(results, "", label)
    logs.report()
    report_echo(echo)


if __name__ == "__main__":
    main()
