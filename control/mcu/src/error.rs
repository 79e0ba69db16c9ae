//! The errors of the MCU library: what a caller can meet when it creates a mixer or a
//! composer, or asks for an output. Malformed media from the network is never an error
//! here: it is counted and concealed.

/// An error of the MCU library.
#[derive(Debug, thiserror::Error)]
pub enum McuError {
    /// The codec library refused an operation (creating an encoder or decoder, setting
    /// a parameter); carries the library's message.
    #[error("codec error: {0}")]
    Codec(String),
    /// A parameter is outside what the library accepts (e.g. a bitrate of zero).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
}

impl From<opus::Error> for McuError {
    fn from(e: opus::Error) -> Self {
        Self::Codec(format!("libopus: {e}"))
    }
}
