// The client end of a data channel without I/O: the same state machine as OpenSSM's Python core
// (openssm/protocol/datachannel.py, DESIGN.md "Data channel"), checked against it by
// tests/unit/console/test_js_channelcore.py. Frames come in decoded (frames.js decodes them, which
// is async); what to send comes out as descriptors that the driver (datachannel.js) encodes in order:
//   {kind: "stream", entry}  an input_stream_data message (entry.bytes caches its encoding, so a
//                            resend is byte-identical)
//   {kind: "ack", frame}     the acknowledge for a received frame
// Time is an argument everywhere (milliseconds), so a test can drive it.

import { MessageType, PayloadType, ackedSequence, parseJsonPayload } from "./frames.js";

export const State = Object.freeze({
  CONNECTING: "connecting",
  OPEN: "open",
  PAUSED: "paused",
  CLOSED: "closed",
});

export const Handshake = Object.freeze({
  NONE: "none",
  REQUESTED: "requested",
  RESPONDED: "responded",
  COMPLETE: "complete",
});

export const CloseReason = Object.freeze({
  CHANNEL_CLOSED: "channel_closed",
  STALLED: "stalled",
  LOCAL: "local",
});

export const SEND_WINDOW = 10000; // the plugin's outgoing buffer
export const REORDER_LIMIT = 10000;
export const INITIAL_RTO_MS = 200;
export const INITIAL_SRTT_MS = 100;
export const MAX_RTO_MS = 1000;
export const MIN_RTO_MARGIN_MS = 10;
export const OUTAGE_RESENDS = 2; // timeout resends with no ack between them: the peer was away
const DATELESS_OK = new Set([MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION]);
const HANDSHAKE_TYPES = new Set([
  PayloadType.HANDSHAKE_REQUEST,
  PayloadType.HANDSHAKE_RESPONSE,
  PayloadType.HANDSHAKE_COMPLETE,
  PayloadType.ENC_CHALLENGE_REQUEST,
  PayloadType.ENC_CHALLENGE_RESPONSE,
]);

export class DataChannelCore {
  constructor({ now = 0, sendWindow = SEND_WINDOW, reorderLimit = REORDER_LIMIT, stallLimitMs = null } = {}) {
    this.now = now;
    this.state = State.CONNECTING;
    this.handshake = Handshake.NONE;
    this.sendWindow = sendWindow;
    this.reorderLimit = reorderLimit;
    this.stallLimitMs = stallLimitMs;
    this.nextSendSeq = 0;
    this.expectedSeq = 0;
    this.unacked = new Map(); // seq -> entry {seq, payloadType, payload, bytes, lastSent}, in order
    this.reorder = new Map();
    this.srtt = INITIAL_SRTT_MS;
    this.rttvar = 0;
    this.rto = INITIAL_RTO_MS;
    this.outgoing = [];
    this.silentResends = 0;
    this.progressAt = now;
    this.closeReason = null;
    this.closeOutput = "";
    this.ready = () => true; // false: the message is dropped unacked, the peer resends it
  }

  advance(now) {
    if (now > this.now) this.now = now;
  }

  // -- transport life cycle -------------------------------------------------------------------

  connected(now) {
    this.advance(now);
    if (this.state === State.CLOSED) throw new Error("the channel is closed");
    if (this.state === State.CONNECTING || this.state === State.PAUSED) this.state = State.OPEN;
    this.resendAll();
    this.progressAt = this.now;
  }

  connectionLost() {
    if (this.state === State.OPEN || this.state === State.PAUSED) this.state = State.CONNECTING;
    this.outgoing = [];
  }

  close() {
    return this.end(CloseReason.LOCAL, "");
  }

  end(reason, output) {
    if (this.state === State.CLOSED) return null;
    this.state = State.CLOSED;
    this.closeReason = reason;
    this.closeOutput = output;
    return { type: "closed", reason, output };
  }

  // -- sending --------------------------------------------------------------------------------

  get canSend() {
    return (this.state === State.OPEN || this.state === State.CONNECTING) && this.unacked.size < this.sendWindow;
  }

  send(payloadType, payload, now) {
    this.advance(now);
    if (!this.canSend) throw new Error(`cannot send on a ${this.state} channel${this.unacked.size >= this.sendWindow ? " (window full)" : ""}`);
    if (this.unacked.size === 0) this.progressAt = this.now;
    const entry = { seq: this.nextSendSeq++, payloadType, payload, bytes: null, lastSent: this.now, resent: false };
    this.unacked.set(entry.seq, entry);
    if (payloadType === PayloadType.HANDSHAKE_RESPONSE) this.handshake = Handshake.RESPONDED;
    if (this.state === State.OPEN) this.outgoing.push({ kind: "stream", entry });
    return entry;
  }

  dataToSend() {
    const out = this.outgoing;
    this.outgoing = [];
    return out;
  }

  resendAll() {
    if (this.state !== State.OPEN) return;
    for (const entry of this.unacked.values()) {
      entry.lastSent = this.now;
      entry.resent = true;
      this.outgoing.push({ kind: "stream", entry });
    }
  }

  resendOverdue(rto, gap) {
    for (const entry of this.unacked.values()) {
      if (entry.resent && this.now - entry.lastSent < MAX_RTO_MS) continue; // resent lately: no more load
      const lost = gap !== null && entry.seq < gap[0] && entry.lastSent <= gap[1];
      if (lost || this.now - entry.lastSent >= rto) {
        entry.lastSent = this.now;
        entry.resent = true;
        this.outgoing.push({ kind: "stream", entry });
      }
    }
  }

  // -- receiving ------------------------------------------------------------------------------

  /** One decoded frame (frames.decodeFrame); returns the events it causes, in order. */
  receiveFrame(frame, now) {
    this.advance(now);
    if (this.state === State.CLOSED) return [];
    const kind = frame.messageType;
    if (!frame.createdDate && !DATELESS_OK.has(kind)) return [{ type: "dropped", reason: `${kind} without CreatedDate` }];
    switch (kind) {
      case MessageType.OUTPUT_STREAM_DATA:
        return this.onStream(frame);
      case MessageType.ACKNOWLEDGE:
        return this.onAck(frame);
      case MessageType.CHANNEL_CLOSED: {
        let output = "";
        try {
          output = parseJsonPayload(frame).Output || "";
        } catch (err) {
          output = "";
        }
        const closed = this.end(CloseReason.CHANNEL_CLOSED, output);
        return closed ? [closed] : [];
      }
      case MessageType.PAUSE_PUBLICATION:
        if (this.state === State.OPEN) this.state = State.PAUSED;
        return [{ type: "paused" }];
      case MessageType.START_PUBLICATION:
        this.unpause();
        this.resendAll();
        return [{ type: "started" }];
      default:
        return [];
    }
  }

  unpause() {
    if (this.state === State.PAUSED) this.state = State.OPEN;
  }

  onAck(frame) {
    let seq;
    try {
      seq = ackedSequence(frame);
    } catch (err) {
      return [{ type: "dropped", reason: `bad acknowledge: ${err.message}` }];
    }
    const head = this.unacked.keys().next();
    const wasHead = !head.done && head.value === seq;
    const rto = this.rto; // before this ack's sample (which the outage may have stretched)
    const entry = this.unacked.get(seq);
    if (entry) {
      this.unacked.delete(seq);
    }
    if (entry && !entry.resent) {
      // Karn's rule: a resent message's ack is no RTT sample.
      const sample = Math.max(0, this.now - entry.lastSent);
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - sample);
      this.srtt = 0.875 * this.srtt + 0.125 * sample;
      this.rto = Math.min(MAX_RTO_MS, this.srtt + Math.max(MIN_RTO_MARGIN_MS, 4 * this.rttvar));
    }
    const events = [];
    if (this.state === State.PAUSED) {
      // Any ack means the peer is there (as AWS's agent does).
      this.unpause();
      this.resendAll();
      events.push({ type: "started" });
    }
    if (!entry) return events;
    this.progressAt = this.now;
    const silence = this.silentResends >= OUTAGE_RESENDS;
    if ((silence || !wasHead) && this.state === State.OPEN) {
      // The peer needed a resend or acked past a gap: what else is overdue, or was sent before the
      // acked message and is still unacked, went missing; it all goes at once.
      this.resendOverdue(silence ? rto : Infinity, wasHead ? null : [seq, entry.lastSent]);
    }
    this.silentResends = 0;
    events.push({ type: "acked", sequence: seq });
    return events;
  }

  onStream(frame) {
    // A corrupt copy is as good as undecodable (the Python core's decode refuses it first).
    if (frame.digestOk === false) return [{ type: "dropped", reason: "payload digest mismatch" }];
    const events = [];
    if (this.state === State.PAUSED) {
      this.unpause();
      this.resendAll();
      events.push({ type: "started" });
    }
    const seq = frame.sequenceNumber;
    if (seq >= this.expectedSeq && !this.ready(frame)) {
      events.push({ type: "dropped", reason: "not ready for it yet", malformed: false });
      return events;
    }
    if (seq < this.expectedSeq) {
      this.outgoing.push({ kind: "ack", frame }); // a duplicate whose ack was lost
      return events;
    }
    if (seq > this.expectedSeq) {
      if (this.reorder.has(seq) || this.reorder.size < this.reorderLimit) {
        this.reorder.set(seq, frame);
        this.outgoing.push({ kind: "ack", frame });
      }
      return events;
    }
    this.outgoing.push({ kind: "ack", frame });
    const deliver = [frame];
    this.expectedSeq++;
    while (this.reorder.has(this.expectedSeq)) {
      deliver.push(this.reorder.get(this.expectedSeq));
      this.reorder.delete(this.expectedSeq);
      this.expectedSeq++;
    }
    for (const delivered of deliver) {
      if (HANDSHAKE_TYPES.has(delivered.payloadType)) {
        if (delivered.payloadType === PayloadType.HANDSHAKE_REQUEST) this.handshake = Handshake.REQUESTED;
        if (delivered.payloadType === PayloadType.HANDSHAKE_COMPLETE) this.handshake = Handshake.COMPLETE;
        events.push({ type: "handshake", frame: delivered, handshake: this.handshake });
      } else {
        events.push({ type: "stream", frame: delivered });
      }
    }
    return events;
  }

  // -- time -----------------------------------------------------------------------------------

  nextDeadline() {
    const deadlines = [];
    if (this.state === State.OPEN) {
      const head = this.unacked.values().next();
      if (!head.done) deadlines.push(head.value.lastSent + this.rto);
    }
    if (this.stallLimitMs !== null && this.unacked.size && this.state !== State.CLOSED) {
      deadlines.push(this.progressAt + this.stallLimitMs);
    }
    return deadlines.length ? Math.min(...deadlines) : null;
  }

  tick(now) {
    this.advance(now);
    const events = [];
    if (this.state === State.OPEN) {
      const head = this.unacked.values().next();
      if (!head.done && this.now - head.value.lastSent >= this.rto) {
        head.value.lastSent = this.now;
        head.value.resent = true;
        this.silentResends++;
        this.outgoing.push({ kind: "stream", entry: head.value });
      }
    }
    if (this.stallLimitMs !== null && this.unacked.size && this.state !== State.CLOSED && this.now - this.progressAt >= this.stallLimitMs) {
      const closed = this.end(CloseReason.STALLED, "");
      if (closed) events.push(closed);
    }
    return events;
  }
}
