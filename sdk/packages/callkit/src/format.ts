// Text the Call Kit shows: call durations, initials for avatars, and the human wording of
// call states and end reasons. Pure functions, no DOM.

import type { CallState, EndReason } from "@cascade/call";

/** `mm:ss` below an hour, `h:mm:ss` from there on; negative durations count as zero. */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n: number): string => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

/** Up to two letters for an avatar: "alice" → "A", "Bob Marley" → "BM", "carol.smith" → "CS". */
export function initials(name: string): string {
  const words = name.trim().split(/[\s._@-]+/u).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0] ?? "");
  return letters.join("").toUpperCase() || "?";
}

/** What the in-call header says for a state. */
export function statusText(state: CallState, direction: "outgoing" | "incoming"): string {
  switch (state) {
    case "ringing":
      return direction === "outgoing" ? "Calling…" : "Incoming call";
    case "connecting":
      return "Connecting…";
    case "active":
      return "Connected";
    case "reconnecting":
      return "Reconnecting…";
    case "ended":
      return "Call ended";
  }
}

/** The ended screen's sentence, from the point of view of this side of the call. */
export function endReasonText(reason: EndReason | undefined, peer: string, direction: "outgoing" | "incoming"): string {
  switch (reason) {
    case "hangup":
      return "You ended the call";
    case "remote_hangup":
      return `${peer} ended the call`;
    case "declined":
      return direction === "outgoing" ? `${peer} declined the call` : "You declined the call";
    case "cancelled":
      return direction === "outgoing" ? "Call cancelled" : `Missed call from ${peer}`;
    case "busy":
      return `${peer} is busy`;
    case "timeout":
      return direction === "outgoing" ? `${peer} did not answer` : `Missed call from ${peer}`;
    case "answered_elsewhere":
      return "Answered on another device";
    case "failed":
      return "The call could not be connected";
    case undefined:
      return "Call ended";
  }
}
