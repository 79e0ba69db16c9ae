// Turns an element's rendered size into layer preferences: debounced, in CSS pixels
// (Subscription.preferSize scales by devicePixelRatio itself), each distinct size sent
// once; the server then picks the simulcast layer that fits.

/** How long an element's size must hold still before the new size is sent. */
export const PREFER_SIZE_DEBOUNCE_MS = 250;

export class SizeReporter {
  readonly #send: (width: number, height: number) => Promise<void>;
  readonly #failed: (error: unknown) => void;
  #pending: ReturnType<typeof setTimeout> | undefined;
  #sent: string | undefined;

  constructor(send: (width: number, height: number) => Promise<void>, failed: (error: unknown) => void) {
    this.#send = send;
    this.#failed = failed;
  }

  /** The element now measures `rect` CSS pixels. */
  resized(rect: { width: number; height: number }): void {
    if (!(rect.width > 0 && rect.height > 0)) return;
    const width = Math.round(rect.width);
    const height = Math.round(rect.height);
    this.cancel();
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      const key = `${width}x${height}`;
      if (key === this.#sent) return;
      this.#sent = key;
      this.#send(width, height).catch((error: unknown) => {
        this.#sent = undefined;
        this.#failed(error);
      });
    }, PREFER_SIZE_DEBOUNCE_MS);
  }

  /** Forgets what was sent (a new subscription starts without preferences). */
  reset(): void {
    this.cancel();
    this.#sent = undefined;
  }

  cancel(): void {
    if (this.#pending !== undefined) clearTimeout(this.#pending);
    this.#pending = undefined;
  }
}
