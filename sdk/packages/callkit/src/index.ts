/**
 * @cascade/callkit: framework-free Web Components for calls and meetings on top of
 * `@cascade/call`: `<cascade-call>` (dialer, incoming call, in call, ended) and
 * `<cascade-meeting>` (a grid of participants with the active speaker highlighted).
 *
 * ```ts
 * import { defineCallKit } from "@cascade/callkit";
 * defineCallKit();
 * document.querySelector("cascade-call")!.agent = agent;
 * ```
 * @module @cascade/callkit
 */

import { CascadeCallElement } from "./call-element.js";
import { CascadeMeetingElement } from "./meeting-element.js";

export { CascadeCallElement, type CallChangeDetail, type CallScreen } from "./call-element.js";
export { CascadeMeetingElement } from "./meeting-element.js";
export { PREFER_SIZE_DEBOUNCE_MS } from "./size.js";

/** Registers `<cascade-call>` and `<cascade-meeting>` (once; later calls do nothing). */
export function defineCallKit(registry: CustomElementRegistry = customElements): void {
  if (!registry.get("cascade-call")) registry.define("cascade-call", CascadeCallElement);
  if (!registry.get("cascade-meeting")) registry.define("cascade-meeting", CascadeMeetingElement);
}

declare global {
  interface HTMLElementTagNameMap {
    "cascade-call": CascadeCallElement;
    "cascade-meeting": CascadeMeetingElement;
  }
}
