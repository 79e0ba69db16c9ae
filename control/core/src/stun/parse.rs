//! Reading STUN: the header, a whole message into a borrowed [`StunMessage`] with
//! its attributes, MESSAGE-INTEGRITY and FINGERPRINT checks, and the USERNAME of a
//! datagram for routing it to its session. Every malformed input is a [`StunError`].

use super::*;

/// Validates the 20-byte header: leading zero bits, magic cookie, and an attribute
/// length that is a multiple of 4 and equal to the bytes following the header.
pub fn parse_header(buf: &[u8]) -> Result<StunHeader, StunError> {
    let (Some(t), Some(len), Some(cookie)) = (be16(buf, 0), be16(buf, 2), be32(buf, 4)) else {
        return Err(StunError::TooShort { len: buf.len() });
    };
    let Some(tid) = buf.get(8..HEADER_LEN) else {
        return Err(StunError::TooShort { len: buf.len() });
    };
    if t & 0xC000 != 0 {
        return Err(StunError::NotStun);
    }
    if cookie != MAGIC_COOKIE {
        return Err(StunError::BadMagicCookie(cookie));
    }
    let declared = usize::from(len);
    // `tid` exists, so buf.len() >= HEADER_LEN.
    let actual = buf.len() - HEADER_LEN;
    if declared % 4 != 0 || declared != actual {
        return Err(StunError::BadLength { declared, actual });
    }
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(tid); // `tid` is buf[8..20]: exactly 12 bytes.
    let (class, method) = decode_type(t);
    Ok(StunHeader {
        class,
        method,
        length: declared,
        transaction_id,
    })
}

/// Parses and validates a whole STUN message.
///
/// Only the first occurrence of an attribute is used; attributes after
/// MESSAGE-INTEGRITY other than FINGERPRINT are ignored (RFC 8489 §14.5); nothing may
/// follow FINGERPRINT. Unknown comprehension-optional attributes (type >= 0x8000) are
/// ignored; unknown comprehension-required ones are recorded, see
/// [`StunMessage::unknown_comprehension_required`].
pub fn parse(buf: &[u8]) -> Result<StunMessage<'_>, StunError> {
    let header = parse_header(buf)?;
    let mut msg = StunMessage {
        class: header.class,
        method: header.method,
        transaction_id: header.transaction_id,
        raw: buf,
        username: None,
        integrity_offset: None,
        fingerprint: None,
        xor_mapped_address: None,
        priority: None,
        use_candidate: false,
        ice_controlling: None,
        ice_controlled: None,
        error_code: None,
        unknown: [0; MAX_UNKNOWN_ATTRIBUTES],
        unknown_len: 0,
    };

    let mut pos = HEADER_LEN;
    while pos < buf.len() {
        let (Some(attr), Some(len)) = (be16(buf, pos), be16(buf, pos + 2)) else {
            return Err(StunError::Truncated { offset: pos });
        };
        let len = usize::from(len);
        let value_start = pos + 4;
        let Some(value) = buf.get(value_start..value_start + len) else {
            return Err(StunError::Truncated { offset: pos });
        };
        let next = value_start + padded(len);
        if next > buf.len() {
            return Err(StunError::Truncated { offset: pos });
        }
        if msg.fingerprint.is_some() {
            return Err(StunError::AttributeAfterFingerprint { attr });
        }
        if attr == ATTR_FINGERPRINT {
            let v = be32(value, 0)
                .filter(|_| len == 4)
                .ok_or(StunError::BadAttribute {
                    attr,
                    reason: "FINGERPRINT must be 4 bytes",
                })?;
            msg.fingerprint = Some((pos, v));
        } else if msg.integrity_offset.is_none() {
            msg.read_attribute(attr, pos, value)?;
        }
        pos = next;
    }
    Ok(msg)
}

impl<'a> StunMessage<'a> {
    fn read_attribute(&mut self, attr: u16, pos: usize, value: &'a [u8]) -> Result<(), StunError> {
        let bad = |reason| StunError::BadAttribute { attr, reason };
        match attr {
            ATTR_USERNAME => {
                if self.username.is_none() {
                    if value.len() > MAX_USERNAME_LEN {
                        return Err(bad("USERNAME longer than 513 bytes"));
                    }
                    let s = std::str::from_utf8(value).map_err(|_| bad("USERNAME is not UTF-8"))?;
                    self.username = Some(s);
                }
            }
            ATTR_MESSAGE_INTEGRITY => {
                if value.len() != 20 {
                    return Err(bad("MESSAGE-INTEGRITY must be 20 bytes"));
                }
                self.integrity_offset = Some(pos);
            }
            ATTR_XOR_MAPPED_ADDRESS => {
                if self.xor_mapped_address.is_none() {
                    let addr = decode_xor_address(value, &self.transaction_id)
                        .ok_or(bad("bad XOR-MAPPED-ADDRESS"))?;
                    self.xor_mapped_address = Some(addr);
                }
            }
            ATTR_PRIORITY => {
                let v = be32(value, 0)
                    .filter(|_| value.len() == 4)
                    .ok_or(bad("PRIORITY must be 4 bytes"))?;
                self.priority.get_or_insert(v);
            }
            ATTR_USE_CANDIDATE => {
                if !value.is_empty() {
                    return Err(bad("USE-CANDIDATE must be empty"));
                }
                self.use_candidate = true;
            }
            ATTR_ICE_CONTROLLING => {
                let v = be64(value).ok_or(bad("ICE-CONTROLLING must be 8 bytes"))?;
                self.ice_controlling.get_or_insert(v);
            }
            ATTR_ICE_CONTROLLED => {
                let v = be64(value).ok_or(bad("ICE-CONTROLLED must be 8 bytes"))?;
                self.ice_controlled.get_or_insert(v);
            }
            ATTR_ERROR_CODE => {
                if self.error_code.is_none() {
                    self.error_code = Some(decode_error_code(value).ok_or(bad("bad ERROR-CODE"))?);
                }
            }
            // Comprehension-optional attributes we do not use (SOFTWARE, vendor ones).
            0x8000..=0xFFFF => {}
            _ => {
                let known = self.unknown_comprehension_required().contains(&attr);
                if !known && let Some(slot) = self.unknown.get_mut(self.unknown_len) {
                    *slot = attr;
                    self.unknown_len += 1;
                }
            }
        }
        Ok(())
    }

    /// The whole datagram this message was parsed from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// USERNAME, if present (and before MESSAGE-INTEGRITY).
    pub fn username(&self) -> Option<&'a str> {
        self.username
    }

    /// The 20-byte HMAC-SHA1 of MESSAGE-INTEGRITY, if present.
    pub fn message_integrity(&self) -> Option<&'a [u8]> {
        let off = self.integrity_offset?;
        self.raw.get(off + 4..off + INTEGRITY_ATTR_LEN)
    }

    /// Offset of the MESSAGE-INTEGRITY attribute header in [`raw`](Self::raw).
    pub fn message_integrity_offset(&self) -> Option<usize> {
        self.integrity_offset
    }

    /// FINGERPRINT value, if present.
    pub fn fingerprint(&self) -> Option<u32> {
        self.fingerprint.map(|(_, v)| v)
    }

    /// XOR-MAPPED-ADDRESS, decoded.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped_address
    }

    /// PRIORITY.
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }

    /// Whether USE-CANDIDATE is present.
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    /// ICE-CONTROLLING tie-breaker.
    pub fn ice_controlling(&self) -> Option<u64> {
        self.ice_controlling
    }

    /// ICE-CONTROLLED tie-breaker.
    pub fn ice_controlled(&self) -> Option<u64> {
        self.ice_controlled
    }

    /// ERROR-CODE.
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        self.error_code
    }

    /// Unknown comprehension-required attribute types (before MESSAGE-INTEGRITY), at
    /// most [`MAX_UNKNOWN_ATTRIBUTES`] of them; a request carrying any must be answered
    /// with 420.
    pub fn unknown_comprehension_required(&self) -> &[u16] {
        self.unknown.get(..self.unknown_len).unwrap_or(&[])
    }

    /// Verifies MESSAGE-INTEGRITY with `key` (for short-term credentials, the password).
    ///
    /// The HMAC covers the message up to MESSAGE-INTEGRITY with the header length set
    /// as if MESSAGE-INTEGRITY were the last attribute, so a FINGERPRINT after it does
    /// not matter. Returns false when MESSAGE-INTEGRITY is absent.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(off) = self.integrity_offset else {
            return false;
        };
        let (Some(type_bytes), Some(rest), Some(expected)) = (
            self.raw.get(..2),
            self.raw.get(4..off),
            self.raw.get(off + 4..off + INTEGRITY_ATTR_LEN),
        ) else {
            return false;
        };
        let Ok(len) = u16::try_from(off + INTEGRITY_ATTR_LEN - HEADER_LEN) else {
            return false;
        };
        match hmac_sha1(key, &[type_bytes, &len.to_be_bytes(), rest]) {
            Ok(mac) => openssl::memcmp::eq(&mac, expected),
            Err(_) => false,
        }
    }

    /// Verifies FINGERPRINT (CRC-32 of the message before it, XOR 0x5354554e).
    /// Returns false when FINGERPRINT is absent.
    pub fn verify_fingerprint(&self) -> bool {
        let Some((off, value)) = self.fingerprint else {
            return false;
        };
        // `parse` rejects anything after FINGERPRINT, so the header length already
        // ends with it, as the CRC requires.
        match self.raw.get(..off) {
            Some(covered) => crc32fast::hash(covered) ^ FINGERPRINT_XOR == value,
            None => false,
        }
    }
}

fn decode_xor_address(value: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let port = be16(value, 2)? ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (family, value.len()) {
        (0x01, 8) => IpAddr::V4(Ipv4Addr::from(be32(value, 4)? ^ MAGIC_COOKIE)),
        (0x02, 20) => {
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes()); // 4 of 16 bytes.
            mask[4..].copy_from_slice(tid); // 12 of 16 bytes.
            let mut octets = [0u8; 16];
            for ((o, v), m) in octets.iter_mut().zip(value.get(4..20)?).zip(mask) {
                *o = v ^ m;
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn decode_error_code(value: &[u8]) -> Option<ErrorCode<'_>> {
    let head = value.get(..4)?;
    let class = u16::from(head[2] & 0x07); // `head` has exactly 4 bytes.
    let number = u16::from(head[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return None;
    }
    let reason = value.get(4..)?;
    if reason.len() > MAX_REASON_LEN {
        return None;
    }
    Some(ErrorCode {
        code: class * 100 + number,
        reason: std::str::from_utf8(reason).ok()?,
    })
}

/// Extracts USERNAME without validating the whole message, to find which session a
/// datagram belongs to. Checks only the leading bits, the magic cookie and the bounds
/// of the attributes it walks; the result must still be authenticated.
pub fn username(buf: &[u8]) -> Option<&str> {
    if buf.first()? & 0xC0 != 0 || be32(buf, 4)? != MAGIC_COOKIE {
        return None;
    }
    let declared = usize::from(be16(buf, 2)?);
    let end = HEADER_LEN.checked_add(declared)?.min(buf.len());
    let mut pos = HEADER_LEN;
    while pos + 4 <= end {
        let attr = be16(buf, pos)?;
        let len = usize::from(be16(buf, pos + 2)?);
        let value = buf.get(pos + 4..pos + 4 + len)?;
        if attr == ATTR_USERNAME {
            return std::str::from_utf8(value).ok();
        }
        if attr == ATTR_MESSAGE_INTEGRITY || attr == ATTR_FINGERPRINT {
            return None;
        }
        pos += 4 + padded(len);
    }
    None
}
