//! SRTP keying material as DTLS-SRTP exports it (RFC 5764, RFC 7714 profiles): what
//! control hands the data plane to key a session. Plain values; the transforms that
//! use them live in the data plane.

/// The SRTP protection profiles Cascade negotiates (RFC 5764 / RFC 7714 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// `SRTP_AES128_CM_SHA1_80`: AES-128 counter mode, HMAC-SHA1 tag of 10 bytes.
    Aes128CmHmacSha1_80,
    /// `SRTP_AEAD_AES_128_GCM`: AES-128-GCM, 16-byte tag. Preferred.
    AeadAes128Gcm,
}

impl SrtpProfile {
    /// Length of the master key in bytes.
    pub const fn key_len(self) -> usize {
        16
    }

    /// Length of the master salt in bytes.
    pub const fn salt_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 14,
            SrtpProfile::AeadAes128Gcm => 12,
        }
    }

    /// Bytes an SRTP packet grows by when protected (the authentication tag).
    pub const fn rtp_overhead(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 10,
            SrtpProfile::AeadAes128Gcm => 16,
        }
    }

    /// Bytes an SRTCP packet grows by when protected (E flag + index, and the tag).
    pub const fn rtcp_overhead(self) -> usize {
        4 + self.rtp_overhead()
    }

    /// The name OpenSSL and RFC 5764 use for this profile.
    pub const fn openssl_name(self) -> &'static str {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_SHA1_80",
            SrtpProfile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
        }
    }

    /// Looks a profile up by its OpenSSL / RFC 5764 name.
    pub fn from_openssl_name(name: &str) -> Option<Self> {
        match name {
            "SRTP_AES128_CM_SHA1_80" => Some(SrtpProfile::Aes128CmHmacSha1_80),
            "SRTP_AEAD_AES_128_GCM" => Some(SrtpProfile::AeadAes128Gcm),
            _ => None,
        }
    }
}

/// Master key and salt for one direction of one session, as exported from DTLS-SRTP.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeyingMaterial {
    pub profile: SrtpProfile,
    pub key: [u8; 16],
    /// Only the first `profile.salt_len()` bytes are used.
    pub salt: [u8; 14],
}

impl std::fmt::Debug for SrtpKeyingMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SrtpKeyingMaterial")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SrtpKeyingMaterial {
    /// Builds keying material from slices; `None` when the lengths do not fit the profile.
    pub fn new(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> Option<Self> {
        if key.len() != profile.key_len() || salt.len() != profile.salt_len() {
            return None;
        }
        let mut k = [0u8; 16];
        k.copy_from_slice(key);
        let mut s = [0u8; 14];
        s[..salt.len()].copy_from_slice(salt);
        Some(Self {
            profile,
            key: k,
            salt: s,
        })
    }

    /// The salt bytes actually used by the profile.
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.salt_len()]
    }
}
