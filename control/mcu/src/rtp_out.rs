//! RTP streams of mixed output.
