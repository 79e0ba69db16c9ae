//! Test fixtures: SDP offers captured from real clients (Chromium, Firefox, OBS,
//! FFmpeg, GStreamer) and helpers that pick m-lines, build codecs and answer offers
//! the way the SFU does. Compiled for tests only.

use std::net::SocketAddr;

use crate::sdp::*;

/// The DTLS fingerprint of the Chromium, FFmpeg and simulcast samples, also the
/// server's own in the answers built here.
pub(super) const FP: &str = "sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08";

/// Turns the LF-terminated samples below into the CRLF form clients send.
pub(super) fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

/// A Chromium publisher (`getUserMedia` + two `sendonly` transceivers).
pub(super) const CHROME_PUBLISH: &str = "v=0
o=- 4215775240449105457 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS 5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Ay1c
a=ice-pwd:7rK3ds0QSlDv4BRF9vSqnAyd
a=ice-options:trickle
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendonly
a=msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 0c9a2d6e-1b4f-4c8e-8f3a-2d7e5b9c1a40
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001 cname:Wq3bS2rJ4b1xYz7K
a=ssrc:1001 msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 0c9a2d6e-1b4f-4c8e-8f3a-2d7e5b9c1a40
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 35 36 103 104 107 108 109 114 115 116 117 118 119 120 121
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Ay1c
a=ice-pwd:7rK3ds0QSlDv4BRF9vSqnAyd
a=ice-options:trickle
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:13 urn:3gpp:video-orientation
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 9b1f6c3d-5e2a-4f7b-8c0d-3a6e9f2b4c18
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=rtcp-fb:98 goog-remb
a=rtcp-fb:98 transport-cc
a=rtcp-fb:98 ccm fir
a=rtcp-fb:98 nack
a=rtcp-fb:98 nack pli
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 VP9/90000
a=rtcp-fb:100 nack
a=rtcp-fb:100 nack pli
a=fmtp:100 profile-id=2
a=rtpmap:101 rtx/90000
a=fmtp:101 apt=100
a=rtpmap:35 AV1/90000
a=rtcp-fb:35 nack
a=rtcp-fb:35 nack pli
a=fmtp:35 level-idx=5;profile=0;tier=0
a=rtpmap:36 rtx/90000
a=fmtp:36 apt=35
a=rtpmap:103 H264/90000
a=rtcp-fb:103 nack
a=rtcp-fb:103 nack pli
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:104 rtx/90000
a=fmtp:104 apt=103
a=rtpmap:107 H264/90000
a=rtcp-fb:107 nack
a=rtcp-fb:107 nack pli
a=fmtp:107 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:108 rtx/90000
a=fmtp:108 apt=107
a=rtpmap:109 H264/90000
a=rtcp-fb:109 goog-remb
a=rtcp-fb:109 transport-cc
a=rtcp-fb:109 ccm fir
a=rtcp-fb:109 nack
a=rtcp-fb:109 nack pli
a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:114 rtx/90000
a=fmtp:114 apt=109
a=rtpmap:115 H264/90000
a=fmtp:115 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
a=rtpmap:116 rtx/90000
a=fmtp:116 apt=115
a=rtpmap:117 H264/90000
a=fmtp:117 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:118 rtx/90000
a=fmtp:118 apt=117
a=rtpmap:119 red/90000
a=rtpmap:120 rtx/90000
a=fmtp:120 apt=119
a=rtpmap:121 ulpfec/90000
a=ssrc-group:FID 2001 2002
a=ssrc:2001 cname:Wq3bS2rJ4b1xYz7K
a=ssrc:2001 msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 9b1f6c3d-5e2a-4f7b-8c0d-3a6e9f2b4c18
a=ssrc:2002 cname:Wq3bS2rJ4b1xYz7K
a=ssrc:2002 msid:5e4c0ff2-7f3e-4a0e-9a43-6b1c4e0d3b8a 9b1f6c3d-5e2a-4f7b-8c0d-3a6e9f2b4c18
";

/// A Chromium subscriber: two `recvonly` transceivers, no msid, no SSRC.
pub(super) const CHROME_SUBSCRIBE: &str = "v=0
o=- 8330496521306040185 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:kR9s
a=ice-pwd:Zt0cV4l3yX2pQm8nB1wE7rTa
a=ice-options:trickle
a=fingerprint:sha-256 1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00:0F:1E:2D:3C:4B:5A:69:78:87:96:A5:B4:C3:D2:E1:F0
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 109 114 103 104 45 46
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:kR9s
a=ice-pwd:Zt0cV4l3yX2pQm8nB1wE7rTa
a=ice-options:trickle
a=fingerprint:sha-256 1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00:0F:1E:2D:3C:4B:5A:69:78:87:96:A5:B4:C3:D2:E1:F0
a=setup:actpass
a=mid:1
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=rtcp-fb:98 nack
a=rtcp-fb:98 nack pli
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:109 H264/90000
a=rtcp-fb:109 nack
a=rtcp-fb:109 nack pli
a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:114 rtx/90000
a=fmtp:114 apt=109
a=rtpmap:103 H264/90000
a=rtcp-fb:103 nack
a=rtcp-fb:103 nack pli
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f
a=rtpmap:104 rtx/90000
a=fmtp:104 apt=103
a=rtpmap:45 AV1/90000
a=rtcp-fb:45 nack
a=rtcp-fb:45 nack pli
a=fmtp:45 level-idx=5;profile=0;tier=0
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
";

/// A Firefox publisher: session-level fingerprint and direction, its own
/// payload type numbering (opus 109, VP8 120), SSRC group after the SSRCs.
pub(super) const FIREFOX_PUBLISH: &str = "v=0
o=mozilla...THIS_IS_SDPARTA-128.0 6853454353422213823 0 IN IP4 0.0.0.0
s=-
t=0 0
a=sendrecv
a=fingerprint:sha-256 3D:A1:0B:7E:55:C2:19:8F:4E:6B:DA:20:91:3C:77:E8:AF:02:5D:B6:C9:14:38:F0:6E:1A:82:D7:4B:90:E3:5C
a=group:BUNDLE 0 1
a=ice-options:trickle
a=msid-semantic:WMS *
m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
a=fmtp:101 0-15
a=ice-pwd:2f5b4f3e1c9d8a7b6c5d4e3f2a1b0c9d
a=ice-ufrag:7d2b1e8f
a=mid:0
a=msid:{a1c5e2f0-3b4d-4e6f-8a9b-0c1d2e3f4a5b} {b2d6f3a1-4c5e-4f70-9bac-1d2e3f4a5b6c}
a=rtcp-mux
a=rtpmap:109 opus/48000/2
a=rtpmap:9 G722/8000/1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=setup:actpass
a=ssrc:3176340133 cname:{e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9}
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98 123 122 119
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:5 urn:ietf:params:rtp-hdrext:toffset
a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1
a=fmtp:120 max-fs=12288;max-fr=60
a=fmtp:124 apt=120
a=fmtp:121 max-fs=12288;max-fr=60
a=fmtp:125 apt=121
a=fmtp:127 apt=126
a=fmtp:98 apt=97
a=fmtp:119 apt=122
a=ice-pwd:2f5b4f3e1c9d8a7b6c5d4e3f2a1b0c9d
a=ice-ufrag:7d2b1e8f
a=mid:1
a=msid:{a1c5e2f0-3b4d-4e6f-8a9b-0c1d2e3f4a5b} {c3e7a4b2-5d6f-4081-acbd-2e3f4a5b6c7d}
a=rtcp-fb:120 nack
a=rtcp-fb:120 nack pli
a=rtcp-fb:120 ccm fir
a=rtcp-fb:120 goog-remb
a=rtcp-fb:120 transport-cc
a=rtcp-fb:121 nack
a=rtcp-fb:121 nack pli
a=rtcp-fb:121 ccm fir
a=rtcp-fb:121 goog-remb
a=rtcp-fb:121 transport-cc
a=rtcp-fb:126 nack
a=rtcp-fb:126 nack pli
a=rtcp-fb:126 ccm fir
a=rtcp-fb:126 goog-remb
a=rtcp-fb:126 transport-cc
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 ccm fir
a=rtcp-fb:97 goog-remb
a=rtcp-fb:97 transport-cc
a=rtcp-fb:123 nack
a=rtcp-fb:123 nack pli
a=rtcp-fb:123 ccm fir
a=rtcp-fb:123 goog-remb
a=rtcp-fb:123 transport-cc
a=rtcp-fb:122 nack
a=rtcp-fb:122 nack pli
a=rtcp-fb:122 ccm fir
a=rtcp-fb:122 goog-remb
a=rtcp-fb:122 transport-cc
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:120 VP8/90000
a=rtpmap:124 rtx/90000
a=rtpmap:121 VP9/90000
a=rtpmap:125 rtx/90000
a=rtpmap:126 H264/90000
a=rtpmap:127 rtx/90000
a=rtpmap:97 H264/90000
a=rtpmap:98 rtx/90000
a=rtpmap:123 ulpfec/90000
a=rtpmap:122 red/90000
a=rtpmap:119 rtx/90000
a=setup:actpass
a=ssrc:1815113374 cname:{e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9}
a=ssrc:2473968036 cname:{e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9}
a=ssrc-group:FID 1815113374 2473968036
";

/// OBS WHIP output (libdatachannel): session-level fingerprint, setup and ICE
/// credentials after each m-line's attributes, the gathered candidates in the
/// first m-line, H264 without rtx.
pub(super) const OBS_WHIP: &str = "v=0
o=rtc 3157928817 0 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=group:LS 0 1
a=msid-semantic:WMS *
a=ice-options:ice2,trickle
a=fingerprint:sha-256 A0:B1:C2:D3:E4:F5:06:17:28:39:4A:5B:6C:7D:8E:9F:A0:B1:C2:D3:E4:F5:06:17:28:39:4A:5B:6C:7D:8E:9F
m=audio 53150 UDP/TLS/RTP/SAVPF 111
c=IN IP4 192.168.1.20
a=mid:0
a=sendonly
a=ssrc:2884215402 cname:Dv8Yp6Yq4gnzr1Ix
a=ssrc:2884215402 msid:obs-stream audio
a=msid:obs-stream audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1
a=setup:actpass
a=ice-ufrag:zPvA
a=ice-pwd:1Wqy2Qp3gmJmY8eD2U0mX2
a=candidate:1 1 UDP 2122317823 192.168.1.20 53150 typ host
a=candidate:2 1 UDP 1686109951 203.0.113.7 53150 typ srflx raddr 0.0.0.0 rport 0
a=end-of-candidates
m=video 53150 UDP/TLS/RTP/SAVPF 96
c=IN IP4 192.168.1.20
a=mid:1
a=sendonly
a=ssrc:2884215403 cname:Dv8Yp6Yq4gnzr1Ix
a=ssrc:2884215403 msid:obs-stream video
a=msid:obs-stream video
a=rtcp-mux
a=rtpmap:96 H264/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 goog-remb
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1
a=setup:actpass
a=ice-ufrag:zPvA
a=ice-pwd:1Wqy2Qp3gmJmY8eD2U0mX2
";

/// The FFmpeg WHIP muxer: fixed layout, H264 and opus, `a=setup:passive`.
pub(super) const FFMPEG_WHIP: &str = "v=0
o=FFmpeg 4489045141692799359 2 IN IP4 127.0.0.1
s=FFmpegPublishSession
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=ice-ufrag:6b8b4567
a=ice-pwd:327b23c6643c986966334873238e1f29
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:passive
a=mid:0
a=sendonly
a=msid:FFmpeg audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=ssrc:1681692777 cname:FFmpeg
a=ssrc:1681692777 msid:FFmpeg audio
m=video 9 UDP/TLS/RTP/SAVPF 106
c=IN IP4 0.0.0.0
a=ice-ufrag:6b8b4567
a=ice-pwd:327b23c6643c986966334873238e1f29
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:passive
a=mid:1
a=sendonly
a=msid:FFmpeg video
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=ssrc:1714636915 cname:FFmpeg
a=ssrc:1714636915 msid:FFmpeg video
";

/// GStreamer webrtcbin (whipclientsink): `video0`/`audio1` mids, upper-case
/// OPUS, mid and fingerprint after the SSRCs.
pub(super) const GSTREAMER_WHIP: &str = "v=0
o=- 1966146383413735474 0 IN IP4 0.0.0.0
s=-
t=0 0
a=ice-options:trickle
a=group:BUNDLE video0 audio1
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:Zr5c6bDiHTPZHjmOO+nBIuhKhjkMSCqk
a=ice-pwd:ppeyLprHGXBTTfTuA+1xmNK0c5ArPSnc
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 transport-cc
a=framerate:30
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=ssrc-group:FID 3484078950 3233196000
a=ssrc:3484078950 msid:user2957213236@host-5d1e60ae webrtctransceiver0
a=ssrc:3484078950 cname:user2957213236@host-5d1e60ae
a=ssrc:3233196000 msid:user2957213236@host-5d1e60ae webrtctransceiver0
a=ssrc:3233196000 cname:user2957213236@host-5d1e60ae
a=mid:video0
a=fingerprint:sha-256 5E:07:A1:C3:94:2B:6D:F0:18:8A:3C:E5:71:9F:0B:D2:46:AE:13:C8:7F:20:B9:64:DA:35:8E:01:F7:5C:A9:42
a=extmap:1 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:Zr5c6bDiHTPZHjmOO+nBIuhKhjkMSCqk
a=ice-pwd:ppeyLprHGXBTTfTuA+1xmNK0c5ArPSnc
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=rtpmap:111 OPUS/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 sprop-maxcapturerate=48000;sprop-stereo=0
a=ssrc:1869395345 msid:user2957213236@host-5d1e60ae webrtctransceiver1
a=ssrc:1869395345 cname:user2957213236@host-5d1e60ae
a=mid:audio1
a=fingerprint:sha-256 5E:07:A1:C3:94:2B:6D:F0:18:8A:3C:E5:71:9F:0B:D2:46:AE:13:C8:7F:20:B9:64:DA:35:8E:01:F7:5C:A9:42
";

/// A Chromium publisher sending three simulcast layers (rid + simulcast, no SSRC).
pub(super) const CHROME_SIMULCAST: &str = "v=0
o=- 2954372283453386420 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Qm3p
a=ice-pwd:b8NfXc2LzVq9Rt4Ws1Yk0Ue6
a=ice-options:trickle
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:0
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:- 7c4f2a9e-1d3b-4e5f-9a8b-6c7d8e9f0a1b
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rid:q send
a=rid:h send
a=rid:f send max-width=1280;max-height=720
a=simulcast:send q;h;f
";

/// Every sample, for the properties that must hold on all of them.
pub(super) fn samples() -> Vec<String> {
    [
        CHROME_PUBLISH,
        CHROME_SUBSCRIBE,
        FIREFOX_PUBLISH,
        OBS_WHIP,
        CHROME_SIMULCAST,
        FFMPEG_WHIP,
        GSTREAMER_WHIP,
    ]
    .into_iter()
    .map(crlf)
    .collect()
}

pub(super) fn mid<'a>(sdp: &'a SessionDescription, mid: &str) -> &'a MediaDescription {
    sdp.media
        .iter()
        .find(|m| m.mid.as_deref() == Some(mid))
        .expect("sample has this mid")
}

pub(super) fn pts(codecs: &[Codec]) -> Vec<u8> {
    codecs.iter().map(|c| c.payload_type).collect()
}

pub(super) fn codec(pt: u8, name: &str, clock_rate: u32, fmtp: Option<&str>) -> Codec {
    Codec {
        payload_type: pt,
        name: name.to_owned(),
        clock_rate,
        channels: None,
        fmtp: fmtp.map(str::to_owned),
        rtcp_fb: Vec::new(),
    }
}

/// Answers an offer the way the SFU does: the chosen codec and its rtx on
/// every usable audio/video m-line, everything else rejected.
pub(super) fn answer_for(offer: &SessionDescription, candidate: SocketAddr) -> SessionAnswer {
    let mut next_ssrc = 0x1000_0000u32;
    let media = offer
        .media
        .iter()
        .map(|m| {
            let usable = m.port != 0
                && matches!(m.media_type, MediaType::Audio | MediaType::Video)
                && m.mid.is_some();
            match choose_codec(m).filter(|_| usable) {
                Some(c) => {
                    let mut codecs = vec![c.clone()];
                    let rtx = m.rtx_payload_for(c.payload_type);
                    if let Some(r) =
                        rtx.and_then(|pt| m.codecs.iter().find(|k| k.payload_type == pt))
                    {
                        codecs.push(r.clone());
                    }
                    let send = m.direction.receives().then(|| {
                        next_ssrc += 2;
                        SendStream {
                            ssrc: next_ssrc,
                            rtx_ssrc: rtx.map(|_| next_ssrc + 1),
                            cname: "cascade-1".into(),
                            stream_id: "pub1".into(),
                            track_id: format!("pub1-{}", m.mid.as_deref().unwrap_or("")),
                        }
                    });
                    MediaAnswer {
                        mid: m.mid.clone().unwrap_or_default(),
                        media_type: m.media_type.clone(),
                        protocol: m.protocol.clone(),
                        direction: m.direction.reverse(),
                        rejected: false,
                        codecs,
                        extmaps: m
                            .extmaps
                            .iter()
                            .filter(|e| e.uri.ends_with("sdes:mid"))
                            .cloned()
                            .collect(),
                        send,
                        rtcp_rsize: m.rtcp_rsize,
                        recv_rids: Vec::new(),
                    }
                }
                None => MediaAnswer {
                    mid: m.mid.clone().unwrap_or_default(),
                    media_type: m.media_type.clone(),
                    protocol: m.protocol.clone(),
                    direction: Direction::Inactive,
                    rejected: true,
                    codecs: Vec::new(),
                    extmaps: Vec::new(),
                    send: None,
                    rtcp_rsize: false,
                    recv_rids: Vec::new(),
                },
            }
        })
        .collect();
    SessionAnswer {
        setup: Setup::Passive,
        session_id: 77,
        ice_ufrag: "srvU".into(),
        ice_pwd: "srvPassword0123456789ab".into(),
        fingerprint: FP.into(),
        candidate,
        media,
    }
}

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
