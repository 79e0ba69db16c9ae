/**
 * The Chromium flags every driver of tests/browser starts from: headless, no sandbox
 * (the tests run as root), media permission granted without a prompt, no background
 * traffic, no QUIC (a driver that tests HTTP/3 takes "--disable-quic" out), and
 * autoplay without a gesture. Drivers add their own (fake devices, secure origins,
 * field trials).
 */
export const CHROMIUM_BASE_ARGS = [
  "--headless",
  "--no-sandbox",
  "--use-fake-ui-for-media-stream",
  "--disable-background-networking",
  "--no-first-run",
  "--disable-gpu",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
  "--autoplay-policy=no-user-gesture-required",
];

/** Chromium's synthetic camera and microphone. */
export const FAKE_DEVICES = "--use-fake-device-for-media-stream";
