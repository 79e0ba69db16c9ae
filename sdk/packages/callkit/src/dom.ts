// DOM helpers shared by both components.

/** Sets a toggle button's pressed state and the label that says what pressing it does. */
export function setPressed(button: HTMLElement, pressed: boolean, labelOn: string, labelOff: string): void {
  button.setAttribute("aria-pressed", String(pressed));
  button.setAttribute("aria-label", pressed ? labelOn : labelOff);
  button.title = pressed ? labelOn : labelOff;
}
