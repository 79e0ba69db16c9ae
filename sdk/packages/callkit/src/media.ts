// Small helpers around <video> elements and MediaStreams shared by both components.

/** Whether the stream carries a video track that is not ended. */
export function hasVideo(stream: MediaStream): boolean {
  return stream.getVideoTracks().some((t) => t.readyState !== "ended");
}

/** Plays a video element, calling `refused` when the browser refuses (autoplay policy). */
export function playVideo(video: HTMLVideoElement, refused: () => void): void {
  let played: Promise<void> | undefined;
  try {
    played = video.play();
  } catch {
    refused();
    return;
  }
  if (played && typeof played.catch === "function") {
    played.catch((err: unknown) => {
      if (err instanceof Error && err.name === "NotAllowedError") refused();
    });
  }
}

/** Points a video element at a stream (or at nothing) and starts it; no-op when unchanged. */
export function setStream(video: HTMLVideoElement, stream: MediaStream | undefined, refused: () => void = () => undefined): void {
  const next = stream ?? null;
  if (video.srcObject === next) return;
  video.srcObject = next;
  if (next) playVideo(video, refused);
}
