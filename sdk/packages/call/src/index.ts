/**
 * @cascade/call: 1:1 calls (invite, ringing, accept, decline, cancel, busy, timeout,
 * hang-up, several devices per user) and meetings, over `@cascade/core` media and a
 * `@cascade/signal` channel.
 * @module @cascade/call
 */
export { CallAgent, type CallAgentOptions, type CallEventDetail } from "./agent.js";
export { Call, type CallState, type EndReason, type CallStateDetail } from "./call.js";
export { Meeting, type MeetingOptions, type Participant, type ParticipantDetail } from "./meeting.js";
export { callMessage, parseCallMessage, type CallMessage, type CallMessageType, type CallMedia } from "./protocol.js";
