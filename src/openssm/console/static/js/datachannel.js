// The client side of a Session Manager data channel, as AWS's plugin speaks it (protocol reference
// §2): a thin driver over channelcore.js (the same state machine as OpenSSM's Python core: numbered
// input_stream_data, end-to-end acks, in-order delivery, retransmission on an adaptive RTO, outage
// recovery). This file does the I/O: the WebSocket, the open frame with the TokenValue, encoding in
// order, the resend timer, resuming, and what the session's messages mean (handshake, output, Size).
// Works with any WebSocket implementation (browser or Node).

import { FLAG_DATA, MessageType, PayloadType, ackFor, decodeFrame, encodeFrame, jsonPayload, parseJsonPayload, randomUuid } from "./frames.js";
import { DataChannelCore, State } from "./channelcore.js";
import { backoffDelays } from "./backoff.js";

export const CLIENT_VERSION = "1.2.677.0"; // the plugin version whose behaviour we follow
export const CHUNK_BYTES = 1024; // the plugin sends stdin in chunks of at most 1 KiB
export const RESEND_INTERVAL_MS = 100;
// How long a lost channel is given to come back (ResumeSession + re-dial, AWS's backoff shape): long
// enough for a server restart, as the CLI (openssm/client/datachannel.py, DEFAULT_RESUME_WINDOW).
export const RESUME_WINDOW_MS = 90_000;
// The lines the terminal shows while the channel is away and when it is back (the CLI's, on stderr).
export const RECONNECTING_NOTICE = "[openssm] connection lost, reconnecting\u2026";
export const RECONNECTED_NOTICE = "[openssm] connection back; the session goes on";
const SHELL_SESSION_TYPES = new Set(["Standard_Stream", "InteractiveCommands", "NonInteractiveCommands"]);

/** Why a session ended, from the channel_closed Output text the gateway writes. */
export function classifyEnd(output) {
  const text = (output || "").trim();
  if (!text) return { kind: "exited", title: "Session ended", detail: "The shell exited." };
  if (/idle/i.test(text)) return { kind: "idle", title: "Session ended: idle timeout", detail: text };
  if (/maximum duration/i.test(text)) return { kind: "max-duration", title: "Session ended: maximum duration reached", detail: text };
  if (/^Terminated by/i.test(text)) return { kind: "terminated", title: "Session terminated", detail: text };
  if (/agent/i.test(text)) return { kind: "agent-gone", title: "Session ended: the node's agent went away", detail: text };
  return { kind: "other", title: "Session ended", detail: text };
}

export class DataChannelClient {
  /**
   * @param {object} options
   *   streamUrl, tokenValue, sessionId: from StartSession;
   *   onOutput(Uint8Array), onClosed({kind, title, detail}), onNotice(text), onOpen() (the open
   *   frame went out): callbacks;
   *   resume(): async, a new TokenValue from ResumeSession (or null) after the socket dropped;
   *   WebSocketImpl (default globalThis.WebSocket), now (ms clock, default performance.now);
   *   resumeWindowMs (default RESUME_WINDOW_MS), wait (async ms => void, default setTimeout's) and
   *   random (the backoff's first draw, default Math.random), which tests replace.
   */
  constructor(options) {
    this.streamUrl = options.streamUrl;
    this.tokenValue = options.tokenValue;
    this.sessionId = options.sessionId;
    this.onOutput = options.onOutput || (() => {});
    this.onClosed = options.onClosed || (() => {});
    this.onNotice = options.onNotice || (() => {});
    this.onOpen = options.onOpen || (() => {});
    this.resume = options.resume || null; // async () => new TokenValue, or null when not resumable
    this.resumeWindowMs = options.resumeWindowMs ?? RESUME_WINDOW_MS;
    this.wait = options.wait || ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = options.random || Math.random;
    this.resuming = false;
    this.everOpened = false;
    this.WebSocketImpl = options.WebSocketImpl || globalThis.WebSocket;
    this.now = options.now || (() => globalThis.performance.now());
    this.clientId = randomUuid();
    this.core = new DataChannelCore({ now: this.now() });
    this.queue = []; // [payloadType, Uint8Array] waiting for room in the send window
    this.started = false; // the shell's first output (or HandshakeComplete) has arrived
    this.ended = false;
    this.pendingSize = null;
    this.incoming = Promise.resolve(); // frames are handled strictly one after another
    this.outgoing = Promise.resolve(); // and sent in the order the core queued them (encoding is async)
    this.ws = null;
    this.timer = null;
  }

  start() {
    this.connect(this.tokenValue);
    this.timer = setInterval(() => this.tick(), RESEND_INTERVAL_MS);
  }

  /** The core's timer: resend the oldest unacked message when older than the RTO. */
  tick() {
    this.handleEvents(this.core.tick(this.now()));
    this.flush();
  }

  /** Dial the StreamUrl and authenticate with `token` in the open frame (same ClientId on resume). */
  connect(token) {
    const ws = new this.WebSocketImpl(this.streamUrl);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.everOpened = true;
      ws.send(
        JSON.stringify({
          MessageSchemaVersion: "1.0",
          RequestId: randomUuid(),
          TokenValue: token,
          ClientId: this.clientId,
          ClientVersion: CLIENT_VERSION,
        }),
      );
      // Everything still unacked goes again, oldest first (after a reconnect).
      if (this.core.state !== State.CLOSED) this.core.connected(this.now());
      this.pump();
      this.flush();
      this.onOpen();
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws || typeof event.data === "string") return; // the gateway sends only binary frames
      const data = event.data;
      this.incoming = this.incoming.then(() => this.handle(data)).catch((err) => this.onNotice(`dropped a bad frame: ${err.message}`));
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.core.connectionLost();
      this.incoming.then(() => this.connectionLost());
    };
    ws.onerror = () => {};
  }

  /**
   * The socket closed without channel_closed: like the CLI, ask for a new token (ResumeSession,
   * through `options.resume`) and dial the same StreamUrl again, at once and then with AWS's
   * backoff until the resume window ends; sequence numbers and buffers carry on. The terminal says
   * so while it waits and when the channel is back. Ends the session when no token comes back (the
   * session is over) or the window passes.
   */
  async connectionLost() {
    if (this.ended) return;
    if (!this.resume || this.resuming || !this.everOpened) {
      // (a first dial that never opened is refused, not lost: nothing to resume, say why at once)
      if (!this.resuming) this.finish(null);
      return;
    }
    this.resuming = true;
    this.onNotice(RECONNECTING_NOTICE);
    const deadline = this.now() + this.resumeWindowMs;
    const delays = backoffDelays({ windowMs: this.resumeWindowMs, random: this.random });
    for (let delay = 0; !this.ended; ) {
      await this.wait(delay);
      if (this.ended) break;
      const outcome = await this.resumeOnce(Math.max(100, deadline - this.now()));
      if (outcome === "back") {
        this.resuming = false;
        this.onNotice(RECONNECTED_NOTICE);
        return; // onopen replayed what the agent has not acked yet
      }
      if (outcome === "gone") break; // the session is over (or no longer ours)
      const next = delays.next();
      if (next.done) {
        this.resuming = false;
        this.giveUp();
        return;
      }
      delay = next.value;
    }
    this.resuming = false;
    this.finish(null);
  }

  /** One ResumeSession and dial within `limitMs`: "back", "gone" (no token) or "retry". */
  async resumeOnce(limitMs) {
    let timer = null;
    let timedOut = false;
    const expired = new Promise((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        resolve("retry");
      }, limitMs);
    });
    const attempt = (async () => {
      let token = null;
      try {
        token = await this.resume();
      } catch (err) {
        return "retry"; // the API was unreachable: try again
      }
      if (!token) return "gone";
      if (this.ended || timedOut) return this.ended ? "gone" : "retry";
      return await new Promise((resolve) => {
        this.connect(token);
        const ws = this.ws;
        const previousOpen = ws.onopen;
        ws.onopen = (event) => {
          previousOpen(event);
          resolve("back");
        };
        const previousClose = ws.onclose;
        ws.onclose = (event) => {
          resolve("retry");
          previousClose(event);
        };
        expired.then(() => {
          if (ws.readyState <= 1) ws.close(); // a dial that hangs past the window
        });
      });
    })();
    try {
      return await Promise.race([attempt, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  giveUp() {
    const seconds = Math.round(this.resumeWindowMs / 1000);
    this.finishWith({
      kind: "lost",
      title: "Connection lost",
      detail: `No connection to the server for ${seconds} s; the session was given up.`,
    });
  }

  // -- sending --------------------------------------------------------------------------------

  /** Keystrokes or pasted text: cut into ≤1 KiB Output messages, none lost, in order. */
  sendInput(bytes) {
    for (let offset = 0; offset < bytes.length; offset += CHUNK_BYTES) {
      this.enqueue(PayloadType.OUTPUT, bytes.slice(offset, offset + CHUNK_BYTES));
    }
  }

  /** The terminal size; sent once the shell has started, and again on every change. */
  sendSize(cols, rows) {
    this.pendingSize = { cols, rows };
    if (this.started) this.flushSize();
  }

  flushSize() {
    if (!this.pendingSize) return;
    const size = this.pendingSize;
    this.pendingSize = null;
    this.enqueue(PayloadType.SIZE, jsonPayload(size));
  }

  enqueue(payloadType, payload) {
    if (this.ended) return;
    this.queue.push([payloadType, payload]);
    this.pump();
  }

  pump() {
    while (this.queue.length && this.core.canSend && !this.ended) {
      const [payloadType, payload] = this.queue.shift();
      this.core.send(payloadType, payload, this.now());
    }
    this.flush();
  }

  /** Encode and write what the core queued, in its order; a stream message is encoded once, so
   * its resends are byte-identical. */
  flush() {
    for (const item of this.core.dataToSend()) {
      this.outgoing = this.outgoing.then(async () => {
        if (item.kind === "ack") {
          this.rawSend(await ackFor(item.frame));
          return;
        }
        const entry = item.entry;
        if (!entry.bytes) {
          entry.bytes = await encodeFrame({
            messageType: MessageType.INPUT_STREAM_DATA,
            sequenceNumber: entry.seq,
            flags: FLAG_DATA,
            payloadType: entry.payloadType,
            payload: entry.payload,
          });
        }
        if (this.core.unacked.has(entry.seq)) this.rawSend(entry.bytes);
      });
    }
  }

  rawSend(bytes) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(bytes);
  }

  // -- receiving ------------------------------------------------------------------------------

  async handle(data) {
    if (this.ended) return;
    const frame = await decodeFrame(data);
    this.handleEvents(this.core.receiveFrame(frame, this.now()));
    this.flush(); // the acks, after the messages were handled (as the plugin does)
  }

  handleEvents(events) {
    for (const event of events) {
      switch (event.type) {
        case "stream":
        case "handshake":
          this.process(event.frame);
          break;
        case "acked":
        case "started":
          this.pump();
          break;
        case "closed":
          this.finish(event.reason === "channel_closed" ? event.output : null);
          break;
        default:
          break; // "dropped" (a corrupt copy: the agent resends it), "paused"
      }
    }
  }

  process(frame) {
    switch (frame.payloadType) {
      case PayloadType.HANDSHAKE_REQUEST:
        this.answerHandshake(parseJsonPayload(frame));
        return;
      case PayloadType.HANDSHAKE_COMPLETE: {
        const message = parseJsonPayload(frame).CustomerMessage;
        if (message) this.onNotice(message);
        this.markStarted();
        return;
      }
      case PayloadType.ENC_CHALLENGE_REQUEST:
        this.onNotice("This session asks for KMS encryption, which the browser console cannot do.");
        return;
      default:
        // Everything else the agent sends (Output, StdErr, ExitCode text) is terminal output.
        this.markStarted();
        this.onOutput(frame.payload);
    }
  }

  markStarted() {
    if (this.started) return;
    this.started = true;
    this.flushSize();
  }

  answerHandshake(request) {
    const processed = [];
    for (const action of request.RequestedClientActions || []) {
      if (action.ActionType === "SessionType") {
        const type = action.ActionParameters && action.ActionParameters.SessionType;
        const ok = SHELL_SESSION_TYPES.has(type);
        processed.push({
          ActionType: "SessionType",
          ActionStatus: ok ? 1 : 3,
          ActionResult: null,
          Error: ok ? "" : `The browser console cannot run ${type} sessions`,
        });
      } else {
        processed.push({
          ActionType: action.ActionType,
          ActionStatus: 3,
          ActionResult: null,
          Error: `${action.ActionType} is not supported by the browser console`,
        });
      }
    }
    this.enqueue(
      PayloadType.HANDSHAKE_RESPONSE,
      jsonPayload({ ClientVersion: CLIENT_VERSION, ProcessedClientActions: processed, Errors: null }),
    );
  }

  // -- the end --------------------------------------------------------------------------------

  /** `output` is channel_closed's Output text, or null when the connection simply dropped. */
  finish(output) {
    if (output === null && !this.everOpened) {
      // Typically the page was opened at another address than the server's public URL, and the
      // gateway refuses WebSocket upgrades from origins it does not know.
      const origin = new URL(this.streamUrl).host;
      this.finishWith({
        kind: "unreachable",
        title: "Could not open the session's data channel",
        detail: `The gateway at ${origin} did not accept the connection. Open the console at the server's public URL.`,
      });
    } else if (output === null) {
      this.finishWith({ kind: "lost", title: "Connection lost", detail: "The connection to the server closed." });
    } else {
      this.finishWith(classifyEnd(output));
    }
  }

  finishWith(end) {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.timer);
    this.core.close();
    this.queue = [];
    if (this.ws && this.ws.readyState <= 1) this.ws.close();
    this.onClosed(end);
  }

  close() {
    this.finish(null);
  }
}
