/**
 * Reconnection delays: exponential backoff with jitter.
 * @module
 */

/** The delay before reconnection attempt `attempt` (0 = first): between half and
 *  all of `min(maxMs, minMs * 2^attempt)` ("equal jitter"), so clients that lost
 *  the same server spread out. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
