// What both demo pages share: the `window.cascadeDemo` object the tests read, and
// showing a problem to the person using the page.

import type { Call, CallAgent, Meeting } from "@cascade/call";

export interface DemoEvent {
  t: number;
  state: string;
  reason?: string;
}

export interface DemoState {
  agent: CallAgent | undefined;
  call: Call | undefined;
  meeting: Meeting | undefined;
  /** Every call state change, in order: {t (ms since the epoch), state, reason?}. */
  events: DemoEvent[];
  /** True once the page is connected and ready to call or be called. */
  ready: boolean;
  /** What went wrong, when the page could not start. */
  error?: string;
}

declare global {
  interface Window {
    cascadeDemo: DemoState;
  }
}

/** A sentence for an error, with the server's code when there is one. */
export function describe(err: unknown): string {
  if (err && typeof err === "object") {
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message : String(err);
    return typeof code === "string" && code && !message.includes(code) ? `${message} (${code})` : message;
  }
  return String(err);
}

export function showProblem(text: string): void {
  const problem = document.getElementById("problem");
  if (!problem) return;
  problem.textContent = text;
  problem.hidden = false;
}
