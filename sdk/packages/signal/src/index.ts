/**
 * @cascade/signal: the {@link SignalChannel} interface the call layer talks through,
 * and {@link CascadeSignal}, its client for `cascade signal` (durable inboxes,
 * resume, dedup, reconnection).
 * @module @cascade/signal
 */
export type { SignalChannel, SignalMessage, SignalTarget } from "./channel.js";
export {
  CascadeSignal,
  SignalError,
  type CascadeSignalOptions,
  type SeqStorage,
  type SignalState,
  type PresenceDetail,
  type CloseDetail,
} from "./signal.js";
export { backoffDelay } from "./backoff.js";
