/**
 * @cascade/callkit: Web Components for calls and meetings, on top of `@cascade/call`.
 * @packageDocumentation
 */
export {};
