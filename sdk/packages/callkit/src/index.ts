/**
 * @cascade/callkit: Web Components for calls and meetings, on top of `@cascade/call`.
 * @module @cascade/callkit
 */
export {};
