/**
 * The call protocol's messages, carried as the body of signal messages:
 * `{"cascade":"call","v":1,"type":T,"call":ID,"device":DEVICE,...}`. Parsing returns
 * `undefined` for anything else (other applications' messages share the channel).
 * @module
 */

/** The message types. */
export type CallMessageType = "invite" | "ringing" | "accept" | "decline" | "cancel" | "busy" | "answered" | "hangup" | "moved";

const TYPES: readonly CallMessageType[] = ["invite", "ringing", "accept", "decline", "cancel", "busy", "answered", "hangup", "moved"];

/** What a call carries. */
export interface CallMedia {
  audio: boolean;
  video: boolean;
}

/** One call message. */
export interface CallMessage {
  cascade: "call";
  v: 1;
  type: CallMessageType;
  /** The call's id. */
  call: string;
  /** The sending device. */
  device: string;
  /** invite: the caller's publication; accept: the callee's; moved: the sender's new one
   *  (re-published after its server lost the old one). */
  resource?: string;
  /** invite: the caller's media server base URL. */
  server?: string;
  /** invite: the media room both sides publish in (resources are subscribed across servers within one room name). */
  room?: string;
  /** invite: what the call carries. */
  media?: CallMedia;
  /** cancel: the device whose accept won (the others stop: answered elsewhere). */
  accepted_device?: string;
  /** cancel: why (`timeout`, `declined`, `busy`, `cancelled`). */
  reason?: string;
}

/** A call message's body, without the envelope fields. */
export type CallMessageFields = Omit<CallMessage, "cascade" | "v" | "type" | "call" | "device">;

/** Builds a message. */
export function callMessage(type: CallMessageType, call: string, device: string, fields: CallMessageFields = {}): CallMessage {
  return { cascade: "call", v: 1, type, call, device, ...fields };
}

const str = (v: unknown): v is string => typeof v === "string" && v.length > 0 && v.length <= 2048;

/** The call message of a signal body, or `undefined` when it is none (or malformed). */
export function parseCallMessage(body: unknown): CallMessage | undefined {
  if (!body || typeof body !== "object" || Array.isArray(body)) return undefined;
  const b = body as Record<string, unknown>;
  if (b.cascade !== "call" || b.v !== 1) return undefined;
  if (!TYPES.includes(b.type as CallMessageType) || !str(b.call) || !str(b.device)) return undefined;
  const m: CallMessage = { cascade: "call", v: 1, type: b.type as CallMessageType, call: b.call, device: b.device };
  if (str(b.resource)) m.resource = b.resource;
  if (str(b.server)) m.server = b.server;
  if (str(b.room)) m.room = b.room;
  if (str(b.accepted_device)) m.accepted_device = b.accepted_device;
  if (str(b.reason)) m.reason = b.reason;
  if (b.media && typeof b.media === "object") {
    const media = b.media as Record<string, unknown>;
    m.media = { audio: media.audio !== false, video: media.video !== false };
  }
  if (m.type === "invite" && (!m.resource || !m.room)) return undefined;
  if ((m.type === "accept" || m.type === "moved") && !m.resource) return undefined;
  return m;
}
