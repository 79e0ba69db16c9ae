/**
 * The signalling interface the call layer needs: send to a user or a room, receive,
 * join and leave. {@link CascadeSignal} implements it over `cascade signal`; an
 * application may implement it over its own IM instead.
 * @module
 */

/** One message received. */
export interface SignalMessage {
  /** The sending user. */
  from: string;
  /** The room it was sent to; `null` for a direct message. */
  room: string | null;
  body: unknown;
  /** The receiver's inbox sequence number. */
  seq?: number;
  /** When the server stored it (unix ms). */
  sentAt?: number;
  /** The sender's client message id. */
  id?: string;
}

/** A recipient: a user (every connection of theirs) or a room's members. */
export type SignalTarget = { user: string } | { room: string };

/** What the call layer needs; an application may implement it over its own IM. */
export interface SignalChannel {
  readonly user: string;
  /** Resolves when the message is stored (it will be delivered). */
  send(to: SignalTarget, body: unknown): Promise<void>;
  /** Returns the unsubscribe function. */
  onMessage(handler: (m: SignalMessage) => void): () => void;
  /** Joins a room; resolves with its members. */
  join?(room: string): Promise<string[]>;
  leave?(room: string): Promise<void>;
  close(): void;
}
