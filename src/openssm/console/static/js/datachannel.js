// The client side of a Session Manager data channel, as AWS's plugin speaks it (protocol reference
// §2): open frame with the TokenValue, numbered input_stream_data, end-to-end acks, in-order
// delivery with a reorder buffer, retransmission of the oldest unacked message on an adaptive RTO,
// Size messages, and channel_closed. Works with any WebSocket implementation (browser or Node).

import {
  FLAG_DATA,
  MessageType,
  PayloadType,
  ackFor,
  ackedSequence,
  decodeFrame,
  encodeFrame,
  jsonPayload,
  parseJsonPayload,
  randomUuid,
} from "./frames.js";

export const CLIENT_VERSION = "1.2.677.0"; // the plugin version whose behaviour we follow
export const CHUNK_BYTES = 1024; // the plugin sends stdin in chunks of at most 1 KiB
export const SEND_WINDOW = 10000; // unacked messages in flight; more input waits in the queue
export const REORDER_LIMIT = 10000;
export const RESEND_INTERVAL_MS = 100;
const INITIAL_RTO_MS = 200;
const INITIAL_SRTT_MS = 100;
const MAX_RTO_MS = 1000;
const MIN_RTO_MARGIN_MS = 10;
const RESUME_ATTEMPTS = 5;
const RESUME_FIRST_DELAY_MS = 150;
const RESUME_MAX_DELAY_MS = 5000;
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
   *   onOutput(Uint8Array), onClosed({kind, title, detail}), onNotice(text): callbacks;
   *   resume(): async, a new TokenValue from ResumeSession (or null) after the socket dropped;
   *   WebSocketImpl (default globalThis.WebSocket), now (ms clock, default performance.now).
   */
  constructor(options) {
    this.streamUrl = options.streamUrl;
    this.tokenValue = options.tokenValue;
    this.sessionId = options.sessionId;
    this.onOutput = options.onOutput || (() => {});
    this.onClosed = options.onClosed || (() => {});
    this.onNotice = options.onNotice || (() => {});
    this.resume = options.resume || null; // async () => new TokenValue, or null when not resumable
    this.resuming = false;
    this.everOpened = false;
    this.WebSocketImpl = options.WebSocketImpl || globalThis.WebSocket;
    this.now = options.now || (() => globalThis.performance.now());
    this.clientId = randomUuid();
    this.nextSendSeq = 0;
    this.expectedSeq = 0;
    this.unacked = new Map(); // seq -> {bytes, lastSent}; Map keeps insertion (= sequence) order
    this.queue = []; // [payloadType, Uint8Array] waiting for room in the send window
    this.reorder = new Map();
    this.srtt = INITIAL_SRTT_MS;
    this.rttvar = 0;
    this.rto = INITIAL_RTO_MS;
    this.started = false; // the shell's first output (or HandshakeComplete) has arrived
    this.ended = false;
    this.pendingSize = null;
    this.incoming = Promise.resolve(); // frames are handled strictly one after another
    this.outgoing = Promise.resolve(); // and sent in sequence order (encoding is async)
    this.ws = null;
    this.timer = null;
  }

  start() {
    this.connect(this.tokenValue);
    this.timer = setInterval(() => this.resendDue(), RESEND_INTERVAL_MS);
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
      // After a reconnect, everything still unacked goes again, oldest first.
      for (const entry of this.unacked.values()) {
        if (entry.bytes) {
          entry.lastSent = this.now();
          this.rawSend(entry.bytes);
        }
      }
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws || typeof event.data === "string") return; // the gateway sends only binary frames
      const data = event.data;
      this.incoming = this.incoming.then(() => this.handle(data)).catch((err) => this.onNotice(`dropped a bad frame: ${err.message}`));
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.incoming.then(() => this.connectionLost());
    };
    ws.onerror = () => {};
  }

  /**
   * The socket closed without channel_closed: like the plugin, ask for a new token
   * (ResumeSession, through `options.resume`) and dial the same StreamUrl again; sequence numbers
   * and buffers carry on. Gives up after RESUME_ATTEMPTS or when no token comes back.
   */
  async connectionLost() {
    if (this.ended) return;
    if (!this.resume || this.resuming) {
      if (!this.resuming) this.finish(null);
      return;
    }
    this.resuming = true;
    let delay = RESUME_FIRST_DELAY_MS;
    for (let attempt = 0; attempt < RESUME_ATTEMPTS && !this.ended; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(RESUME_MAX_DELAY_MS, delay * 2);
      let token = null;
      try {
        token = await this.resume();
      } catch (err) {
        continue; // the API was unreachable: try again
      }
      if (!token) break; // the session is over (or no longer ours)
      this.onNotice("Reconnecting…");
      const opened = await new Promise((resolve) => {
        this.connect(token);
        const ws = this.ws;
        const previousOpen = ws.onopen;
        ws.onopen = (event) => {
          previousOpen(event);
          resolve(true);
        };
        const previousClose = ws.onclose;
        ws.onclose = (event) => {
          resolve(false);
          previousClose(event);
        };
      });
      if (opened) {
        this.resuming = false;
        return;
      }
    }
    this.resuming = false;
    this.finish(null);
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
    while (this.queue.length && this.unacked.size < SEND_WINDOW && !this.ended) {
      const [payloadType, payload] = this.queue.shift();
      const seq = this.nextSendSeq++;
      const entry = { bytes: null, lastSent: this.now() };
      this.unacked.set(seq, entry);
      this.outgoing = this.outgoing.then(async () => {
        entry.bytes = await encodeFrame({
          messageType: MessageType.INPUT_STREAM_DATA,
          sequenceNumber: seq,
          flags: FLAG_DATA,
          payloadType,
          payload,
        });
        if (this.unacked.has(seq)) {
          entry.lastSent = this.now();
          this.rawSend(entry.bytes);
        }
      });
    }
  }

  rawSend(bytes) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(bytes);
  }

  /** Every 100 ms: resend the oldest unacked message if it is older than the RTO. */
  resendDue() {
    const oldest = this.unacked.values().next();
    if (oldest.done || !oldest.value.bytes) return;
    const entry = oldest.value;
    const now = this.now();
    if (now - entry.lastSent < this.rto) return;
    entry.lastSent = now;
    this.rawSend(entry.bytes);
  }

  onAck(frame) {
    const seq = ackedSequence(frame);
    const entry = this.unacked.get(seq);
    if (!entry) return;
    this.unacked.delete(seq);
    const sample = Math.max(0, this.now() - entry.lastSent);
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - sample);
    this.srtt = 0.875 * this.srtt + 0.125 * sample;
    this.rto = Math.min(MAX_RTO_MS, this.srtt + Math.max(MIN_RTO_MARGIN_MS, 4 * this.rttvar));
    this.pump();
  }

  // -- receiving ------------------------------------------------------------------------------

  async handle(data) {
    if (this.ended) return;
    const frame = await decodeFrame(data);
    switch (frame.messageType) {
      case MessageType.ACKNOWLEDGE:
        this.onAck(frame);
        return;
      case MessageType.OUTPUT_STREAM_DATA:
        await this.onStream(frame);
        return;
      case MessageType.CHANNEL_CLOSED: {
        let output = "";
        try {
          output = parseJsonPayload(frame).Output || "";
        } catch (err) {
          output = "";
        }
        this.finish(output);
        return;
      }
      default:
        return; // start/pause_publication and session-state messages are not for the client
    }
  }

  async onStream(frame) {
    if (!frame.digestOk) return; // as the plugin: a corrupt message is dropped unacked, then resent
    const seq = frame.sequenceNumber;
    if (seq < this.expectedSeq) {
      this.rawSend(await ackFor(frame)); // a duplicate whose ack was lost
      return;
    }
    if (seq > this.expectedSeq) {
      if (this.reorder.has(seq) || this.reorder.size < REORDER_LIMIT) {
        this.reorder.set(seq, frame);
        this.rawSend(await ackFor(frame));
      }
      return;
    }
    this.process(frame);
    this.rawSend(await ackFor(frame));
    this.expectedSeq++;
    while (this.reorder.has(this.expectedSeq)) {
      const next = this.reorder.get(this.expectedSeq);
      this.reorder.delete(this.expectedSeq);
      this.process(next);
      this.expectedSeq++;
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
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.timer);
    this.queue = [];
    if (this.ws && this.ws.readyState <= 1) this.ws.close();
    if (output === null && !this.everOpened) {
      // Typically the page was opened at another address than the server's public URL, and the
      // gateway refuses WebSocket upgrades from origins it does not know.
      const origin = new URL(this.streamUrl).host;
      this.onClosed({
        kind: "unreachable",
        title: "Could not open the session's data channel",
        detail: `The gateway at ${origin} did not accept the connection. Open the console at the server's public URL.`,
      });
    } else if (output === null) {
      this.onClosed({ kind: "lost", title: "Connection lost", detail: "The connection to the server closed." });
    } else {
      this.onClosed(classifyEnd(output));
    }
  }

  close() {
    this.finish(null);
  }
}
