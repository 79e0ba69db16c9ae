/**
 * @cascade/core: the media server client. Finds a server (HTTPDNS), publishes and
 * subscribes (WHIP/WHEP), follows room and resource events, restarts ICE on network
 * changes, summarizes getStats, and reports failures as {@link CascadeError}. No
 * signalling of its own: calls and meetings build on it in `@cascade/call`.
 * @module @cascade/core
 */
export { CascadeError, type ClientErrorCode } from "./errors.js";
export { findServer, type FindServerOptions } from "./dns.js";
export type { TokenSource } from "./http.js";
export { Client, type ClientOptions, type PublicationInfo } from "./client.js";
export type { ResourceState, StateDetail } from "./resource.js";
export { Resource } from "./resource.js";
export { Publication, SIMULCAST_ENCODINGS, type PublishOptions, type RepublishedDetail } from "./publication.js";
export { Subscription, type SubscribeOptions, type Composition, type LayerPreferences, type TrackDetail } from "./subscription.js";
export { RoomEvents, type RoomEventDetail } from "./room.js";
export type { StatsSummary } from "./stats.js";
