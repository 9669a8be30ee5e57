// A shell on a managed node: StartSession through the console backend, then the data channel
// straight to the gateway (StreamUrl + TokenValue), rendered with xterm.js.
import { ApiFailure, postJson, showMessage, startPage } from "./common.js";
import { DataChannelClient } from "./datachannel.js";

// xterm.js (the largest script by far) is loaded beside StartSession, not before it: a static
// import would have the browser parse and run it before this module could ask for the session.
const xterm = Promise.all([import("../vendor/xterm.mjs"), import("../vendor/addon-fit.mjs")]);

const query = new URLSearchParams(location.search);
const target = query.get("target") || "";
// Live-session join: ?join=<SessionId>&mode=watch|type attaches to someone's running shell.
const joining = query.get("join");
const watching = query.get("mode") === "watch";
const message = document.getElementById("shell-message");
const encoder = new TextEncoder();
const OPEN_WAIT_MS = 1000; // the terminal is set up once the data channel is open, or after this

function banner(title, detail) {
  document.getElementById("banner-title").textContent = title;
  document.getElementById("banner-detail").textContent = detail || "";
  document.getElementById("shell-banner").classList.remove("hidden");
}

async function main() {
  // The session is asked for first thing (the CSRF token is in the page); the header is drawn meanwhile.
  const starting = joining
    ? postJson(`/console/api/sessions/${encodeURIComponent(joining)}/join`, { readOnly: watching })
    : postJson("/console/api/sessions", { target });
  startPage(joining ? "sessions" : "nodes");
  document.getElementById("shell-title").textContent = joining
    ? `${watching ? "Watching" : "Joined"} ${joining}`
    : `Shell on ${target}`;
  let started;
  try {
    started = await starting;
  } catch (err) {
    const what = joining ? `join ${joining}` : `start a session on ${target}`;
    const text = err.denied ? `You are not allowed to ${what}. ${err.message}` : `Could not ${what}: ${err.message}`;
    showMessage(message, text);
    document.getElementById("terminal").classList.add("hidden");
    return;
  }
  document.getElementById("shell-session").textContent = started.SessionId;
  document.body.dataset.sessionId = started.SessionId;

  // The data channel is opened before the terminal is set up: the gateway pairs it and the agent
  // starts the shell while xterm.js builds its renderer (in the latency bench, that setup came
  // between StartSession's answer and the dial and took longer than the rest of the way to the
  // prompt). The terminal waits for the open frame to go out (at most OPEN_WAIT_MS); what the
  // channel says before the terminal exists waits for it, in order.
  let term = null;
  const early = [];
  const toTerminal = (use) => (term ? use(term) : early.push(use));
  let dialled;
  const opened = new Promise((resolve) => {
    dialled = resolve;
    setTimeout(resolve, OPEN_WAIT_MS);
  });
  const channel = new DataChannelClient({
    streamUrl: started.StreamUrl,
    tokenValue: started.TokenValue,
    sessionId: started.SessionId,
    onOutput: (bytes) => toTerminal((t) => t.write(bytes)),
    // The socket dropped: ResumeSession for a new token (null = not resumable: the session is over).
    // A joiner's session is not theirs to resume.
    resume: joining ? null : async () => {
      try {
        return (await postJson(`/console/api/sessions/${encodeURIComponent(started.SessionId)}/resume`)).TokenValue;
      } catch (err) {
        if (err instanceof ApiFailure && err.status < 500) return null;
        throw err; // server unreachable: the channel tries again
      }
    },
    onNotice: (text) => toTerminal((t) => t.write(`\r\n${text}\r\n`)),
    onOpen: () => dialled(),
    onClosed: (end) => {
      dialled();
      banner(end.title, end.detail);
      document.body.dataset.sessionEnded = end.kind;
      toTerminal((t) => {
        t.options.disableStdin = true;
        t.options.cursorBlink = false;
      });
    },
  });
  channel.start();
  window.addEventListener("beforeunload", () => channel.close());
  const [{ Terminal }, { FitAddon }] = await xterm;
  await opened;

  term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14, convertEol: false });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  for (const use of early.splice(0)) use(term);
  document.body.dataset.joinMode = joining ? (watching ? "watch" : "type") : "";
  if (watching) {
    term.options.disableStdin = true; // watching: the keys stay here
  } else {
    term.onData((data) => channel.sendInput(encoder.encode(data)));
    term.onBinary((data) => channel.sendInput(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
  }
  const holder = document.getElementById("terminal");
  const showSize = () => {
    holder.dataset.cols = String(term.cols);
    holder.dataset.rows = String(term.rows);
  };
  term.onResize(({ cols, rows }) => {
    showSize();
    channel.sendSize(cols, rows);
  });
  showSize();
  window.addEventListener("resize", () => fit.fit());
  channel.sendSize(term.cols, term.rows);
  term.focus();
}

main();
