//! The audio mixer.
