// An optional ringtone for incoming calls, synthesised with WebAudio (two short dual-tone
// bursts every three seconds), so the Call Kit ships no audio file. Off unless the
// element has the `ring-sound` attribute; browsers may keep it silent until the page
// has had a user gesture.

const PERIOD_MS = 3000;

export class Ringer {
  #ctx: AudioContext | undefined;
  #interval: ReturnType<typeof setInterval> | undefined;

  get ringing(): boolean {
    return this.#interval !== undefined;
  }

  start(): void {
    if (this.#interval !== undefined) return;
    const Ctx = globalThis.AudioContext;
    if (typeof Ctx !== "function") return;
    try {
      this.#ctx = new Ctx();
    } catch {
      return;
    }
    this.#burst();
    this.#interval = setInterval(() => this.#burst(), PERIOD_MS);
  }

  stop(): void {
    if (this.#interval !== undefined) clearInterval(this.#interval);
    this.#interval = undefined;
    const ctx = this.#ctx;
    this.#ctx = undefined;
    void ctx?.close().catch(() => undefined);
  }

  #burst(): void {
    const ctx = this.#ctx;
    if (!ctx) return;
    if (ctx.state === "suspended") void ctx.resume().catch(() => undefined);
    const gain = ctx.createGain();
    gain.gain.value = 0;
    gain.connect(ctx.destination);
    const t0 = ctx.currentTime + 0.02;
    for (const start of [t0, t0 + 0.5]) {
      gain.gain.setTargetAtTime(0.08, start, 0.01);
      gain.gain.setTargetAtTime(0, start + 0.35, 0.02);
    }
    for (const freq of [440, 480]) {
      const osc = ctx.createOscillator();
      osc.frequency.value = freq;
      osc.connect(gain);
      osc.start(t0);
      osc.stop(t0 + 1);
    }
  }
}
