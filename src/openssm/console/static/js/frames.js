// Session Manager binary frame codec (the data channel's ClientMessage/AgentMessage), for the
// browser and Node alike: a 120-byte big-endian header then the payload. Protocol reference §2.2.

export const HEADER_LENGTH = 116; // offset of PayloadLength; the length field itself is not counted
export const FRAME_OVERHEAD = 120;
export const MAX_FRAME_SIZE = 1 << 20; // bound on what we decode from the network
export const SCHEMA_VERSION = 1;

export const MessageType = Object.freeze({
  INPUT_STREAM_DATA: "input_stream_data",
  OUTPUT_STREAM_DATA: "output_stream_data",
  ACKNOWLEDGE: "acknowledge",
  CHANNEL_CLOSED: "channel_closed",
  START_PUBLICATION: "start_publication",
  PAUSE_PUBLICATION: "pause_publication",
  AGENT_SESSION_STATE: "agent_session_state",
});

export const PayloadType = Object.freeze({
  NONE: 0,
  OUTPUT: 1,
  ERROR: 2,
  SIZE: 3,
  PARAMETER: 4,
  HANDSHAKE_REQUEST: 5,
  HANDSHAKE_RESPONSE: 6,
  HANDSHAKE_COMPLETE: 7,
  ENC_CHALLENGE_REQUEST: 8,
  ENC_CHALLENGE_RESPONSE: 9,
  FLAG: 10,
  STDERR: 11,
  EXIT_CODE: 12,
});

export const FLAG_DATA = 0;
export const FLAG_SYN = 1;
export const FLAG_ACK = 3;

export class FrameError extends Error {}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** UUIDs travel with their 64-bit halves swapped: the low 8 bytes first, then the high 8. */
export function uuidToWire(uuid) {
  const raw = hexToBytes(uuid.replace(/-/g, ""));
  if (raw.length !== 16) throw new FrameError(`not a UUID: ${uuid}`);
  const wire = new Uint8Array(16);
  wire.set(raw.subarray(8, 16), 0);
  wire.set(raw.subarray(0, 8), 8);
  return wire;
}

export function uuidFromWire(wire) {
  const raw = new Uint8Array(16);
  raw.set(wire.subarray(8, 16), 0);
  raw.set(wire.subarray(0, 8), 8);
  const hex = bytesToHex(raw);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function randomUuid() {
  return globalThis.crypto.randomUUID();
}

export async function sha256(bytes) {
  return new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * Encode one frame. `payload` is a Uint8Array; sequence numbers are Numbers (< 2^53).
 */
export async function encodeFrame({
  messageType,
  sequenceNumber = 0,
  flags = 0,
  payloadType = 0,
  payload = new Uint8Array(0),
  messageId = randomUuid(),
  createdDate = Date.now(),
  schemaVersion = SCHEMA_VERSION,
}) {
  const typeBytes = encoder.encode(messageType);
  if (typeBytes.length > 32) throw new FrameError(`message type too long: ${messageType}`);
  const frame = new Uint8Array(FRAME_OVERHEAD + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, HEADER_LENGTH);
  frame.fill(0x20, 4, 36); // MessageType is right-padded with spaces
  frame.set(typeBytes, 4);
  view.setUint32(36, schemaVersion);
  view.setBigUint64(40, BigInt(createdDate));
  view.setBigInt64(48, BigInt(sequenceNumber));
  view.setBigUint64(56, BigInt(flags));
  frame.set(uuidToWire(messageId), 64);
  frame.set(await sha256(payload), 80);
  view.setUint32(112, payloadType);
  view.setUint32(116, payload.length);
  frame.set(payload, FRAME_OVERHEAD);
  return frame;
}

/**
 * Decode one frame (payload runs to the end of the message, as both real peers read it).
 * `digestOk` is false when a non-empty payload does not match its SHA-256 digest.
 */
export async function decodeFrame(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length > MAX_FRAME_SIZE) throw new FrameError(`frame of ${bytes.length} bytes exceeds the limit`);
  if (bytes.length < FRAME_OVERHEAD) throw new FrameError(`frame of ${bytes.length} bytes is shorter than the header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(0);
  if (headerLength === 0) throw new FrameError("HeaderLength is 0");
  if (headerLength + 4 > bytes.length) throw new FrameError("HeaderLength runs past the frame");
  const messageType = decoder.decode(bytes.subarray(4, 36)).replace(/\0/g, "").trim();
  if (!messageType) throw new FrameError("MessageType is empty");
  const payload = bytes.slice(headerLength + 4);
  const digest = bytes.slice(80, 112);
  const digestOk = payload.length === 0 || equalBytes(await sha256(payload), digest);
  return {
    messageType,
    schemaVersion: view.getUint32(36),
    createdDate: Number(view.getBigUint64(40)),
    sequenceNumber: Number(view.getBigInt64(48)),
    flags: Number(view.getBigUint64(56)),
    messageId: uuidFromWire(bytes.subarray(64, 80)),
    payloadType: view.getUint32(112),
    payload,
    digestOk,
  };
}

export function jsonPayload(value) {
  return encoder.encode(JSON.stringify(value));
}

export function parseJsonPayload(frame) {
  try {
    return JSON.parse(decoder.decode(frame.payload));
  } catch (err) {
    throw new FrameError(`${frame.messageType} payload is not JSON: ${err.message}`);
  }
}

/** The acknowledge frame for a received stream frame. */
export function ackFor(frame) {
  return encodeFrame({
    messageType: MessageType.ACKNOWLEDGE,
    sequenceNumber: 0,
    flags: FLAG_ACK,
    payloadType: PayloadType.NONE,
    payload: jsonPayload({
      AcknowledgedMessageType: frame.messageType,
      AcknowledgedMessageId: frame.messageId,
      AcknowledgedMessageSequenceNumber: frame.sequenceNumber,
      IsSequentialMessage: true,
    }),
  });
}

/** The sequence number an acknowledge frame refers to (acks match by number only). */
export function ackedSequence(frame) {
  const body = parseJsonPayload(frame);
  const seq = body && body.AcknowledgedMessageSequenceNumber;
  if (!Number.isInteger(seq)) throw new FrameError("acknowledge lacks AcknowledgedMessageSequenceNumber");
  return seq;
}

export function flagPayload(flag) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, flag);
  return out;
}
