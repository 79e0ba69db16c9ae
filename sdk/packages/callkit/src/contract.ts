// Temporary copy of the SDK contract's types (development only, until the call package lands).
export type ResourceState = "connecting" | "live" | "reconnecting" | "ended";
export interface LayerPreferences { mid?: string; maxLayer?: number; maxWidth?: number; maxHeight?: number; paused?: boolean }
export declare class Publication extends EventTarget {
  readonly resource: string;
  readonly stream: MediaStream;
  readonly state: ResourceState;
}
export declare class Subscription extends EventTarget {
  readonly resource: string;
  readonly streams: MediaStream[];
  readonly state: ResourceState;
  preferSize(width: number, height: number, mid?: string): Promise<void>;
}
export declare class Client {}
export interface SignalChannel { readonly user: string }
export type CallState = "ringing" | "connecting" | "active" | "reconnecting" | "ended";
export type EndReason = "hangup" | "remote_hangup" | "declined" | "cancelled" | "busy" | "timeout"
  | "answered_elsewhere" | "failed";
export declare class Call extends EventTarget {
  readonly id: string;
  readonly peer: string;
  readonly direction: "outgoing" | "incoming";
  readonly state: CallState;
  readonly endReason?: EndReason;
  readonly startedAt?: number;
  readonly localStream?: MediaStream;
  readonly remoteStream?: MediaStream;
  readonly publication?: Publication;
  readonly subscription?: Subscription;
  accept(): Promise<void>;
  decline(): Promise<void>;
  hangup(): Promise<void>;
  setMuted(kind: "audio" | "video", muted: boolean): void;
  shareScreen(on: boolean): Promise<void>;
}
export declare class CallAgent extends EventTarget {
  call(user: string, media?: { audio?: boolean; video?: boolean }): Promise<Call>;
  readonly current?: Call;
  close(): Promise<void>;
}
export declare class Meeting extends EventTarget {
  readonly participants: ReadonlyMap<string, { user: string; stream?: MediaStream; subscription?: Subscription }>;
  readonly localStream: MediaStream;
  readonly activeSpeaker?: string;
  setMuted(kind: "audio" | "video", muted: boolean): void;
  preferSize(resource: string, width: number, height: number): Promise<void>;
  leave(): Promise<void>;
}
