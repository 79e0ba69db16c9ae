/**
 * The frames of the `cascade signal` WebSocket protocol and their parsing: a frame
 * that does not match is `undefined`, never an exception.
 * @module
 */
import type { SignalTarget } from "./channel.js";

/** Frames the client sends. */
export type ClientFrame =
  | { type: "hello"; resume_after?: number }
  | { type: "send"; id: string; to: SignalTarget; body: unknown }
  | { type: "ack"; seq: number }
  | { type: "join"; room: string }
  | { type: "leave"; room: string }
  | { type: "ping" };

/** Frames the server sends. */
export type ServerFrame =
  | { type: "welcome"; user: string; last_acked: number }
  | { type: "accepted"; id: string; duplicate: boolean }
  | { type: "message"; seq: number; from: string; room: string | null; id: string; body: unknown; sent_at: number }
  | { type: "joined"; room: string; members: string[] }
  | { type: "left"; room: string }
  | { type: "presence"; user: string; online: boolean }
  | { type: "pong" }
  | { type: "error"; code: string; message: string; id?: string };

const str = (v: unknown): v is string => typeof v === "string";
const int = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/** Parses a server frame; `undefined` for anything malformed or unknown. */
export function parseServerFrame(text: unknown): ServerFrame | undefined {
  if (!str(text)) return undefined;
  let f: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(text);
    if (!v || typeof v !== "object" || Array.isArray(v)) return undefined;
    f = v as Record<string, unknown>;
  } catch {
    return undefined;
  }
  switch (f.type) {
    case "welcome":
      return str(f.user) ? { type: "welcome", user: f.user, last_acked: int(f.last_acked) ? f.last_acked : 0 } : undefined;
    case "accepted":
      return str(f.id) ? { type: "accepted", id: f.id, duplicate: f.duplicate === true } : undefined;
    case "message":
      if (!int(f.seq) || !str(f.from)) return undefined;
      return {
        type: "message",
        seq: f.seq,
        from: f.from,
        room: str(f.room) ? f.room : null,
        id: str(f.id) ? f.id : "",
        body: f.body,
        sent_at: int(f.sent_at) ? f.sent_at : 0,
      };
    case "joined":
      return str(f.room) ? { type: "joined", room: f.room, members: Array.isArray(f.members) ? f.members.filter(str) : [] } : undefined;
    case "left":
      return str(f.room) ? { type: "left", room: f.room } : undefined;
    case "presence":
      return str(f.user) ? { type: "presence", user: f.user, online: f.online === true } : undefined;
    case "pong":
      return { type: "pong" };
    case "error": {
      const e: ServerFrame = { type: "error", code: str(f.code) ? f.code : "error", message: str(f.message) ? f.message : "" };
      if (str(f.id)) e.id = f.id;
      return e;
    }
    default:
      return undefined;
  }
}
