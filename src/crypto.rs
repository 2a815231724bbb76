//! Credentials at rest: AES-256-GCM with a key ring. Each ciphertext is stored with the id of the
//! key that sealed it, so keys can be rotated; the rotation id and slot are associated data, so a
//! ciphertext moved to another rotation or slot does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::secret::SecretString;

/// Why sealing or opening failed. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key is not `id:base64(32 bytes)`.
    #[error("encryption key {index} is not `id:base64` of 32 bytes")]
    BadKey {
        /// Position of the key in the ring.
        index: usize,
    },
    /// The ring is empty.
    #[error("no encryption key is configured")]
    NoKey,
    /// The ciphertext names a key the ring does not hold.
    #[error("the credential was sealed with key {0:?}, which is not configured")]
    UnknownKey(String),
    /// Tampered ciphertext, wrong associated data, or wrong key.
    #[error("the credential could not be decrypted (wrong key, or the data was altered)")]
    Open,
}

/// A sealed value: the key id and `nonce || ciphertext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the key that sealed it.
    pub key_id: String,
    /// 12-byte nonce followed by the ciphertext and tag.
    pub bytes: Vec<u8>,
}

/// The configured keys; the first seals, any opens.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

/// Builds the associated data that binds a ciphertext to its rotation and slot.
pub fn associated_data(rotation_id: &str, slot: u32) -> Vec<u8> {
    format!("rotator/v1|{rotation_id}|{slot}").into_bytes()
}

/// A fresh key in the `id:base64` form, for `rotator keygen`.
pub fn generate_key() -> String {
    let key: [u8; 32] = rand::random();
    format!(
        "k{}:{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        BASE64.encode(key)
    )
}

// === impl KeyRing ===

impl KeyRing {
    /// Parses keys in `id:base64` form; the first one seals.
    ///
    /// # Errors
    ///
    /// A malformed key (by position, never by value), or an empty ring.
    pub fn parse(keys: &[SecretString]) -> Result<Self, CryptoError> {
        let mut ring = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let (id, encoded) = key
                .expose()
                .split_once(':')
                .ok_or(CryptoError::BadKey { index })?;
            let bytes = BASE64
                .decode(encoded.trim())
                .map_err(|_| CryptoError::BadKey { index })?;
            let cipher =
                Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey { index })?;
            if id.is_empty() {
                return Err(CryptoError::BadKey { index });
            }
            ring.push((id.to_owned(), cipher));
        }
        if ring.is_empty() {
            return Err(CryptoError::NoKey);
        }
        Ok(Self { keys: ring })
    }

    /// Seals `plaintext` with the first key.
    ///
    /// # Errors
    ///
    /// Only if the cipher fails, which AES-GCM does not for valid input.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let (key_id, cipher) = self.keys.first().ok_or(CryptoError::NoKey)?;
        let nonce: [u8; 12] = rand::random();
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: key_id.clone(),
            bytes,
        })
    }

    /// Opens a sealed value with the key it names.
    ///
    /// # Errors
    ///
    /// [`CryptoError::UnknownKey`] or [`CryptoError::Open`].
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let cipher = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .map(|(_, c)| c)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.bytes.len() < 12 {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(12);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[&str]) -> KeyRing {
        KeyRing::parse(
            &keys
                .iter()
                .map(|k| SecretString::new(*k))
                .collect::<Vec<_>>(),
        )
        .expect("valid ring")
    }

    #[test]
    fn seal_then_open_round_trips_and_binds_the_slot() {
        let key = generate_key();
        let ring = ring(&[&key]);
        let sealed = ring
            .seal(b"pw-123", &associated_data("r1", 0))
            .expect("seal");
        assert_eq!(
            ring.open(&sealed, &associated_data("r1", 0)).expect("open"),
            b"pw-123"
        );
        assert_eq!(
            ring.open(&sealed, &associated_data("r1", 1)),
            Err(CryptoError::Open)
        );
        assert_eq!(
            ring.open(&sealed, &associated_data("r2", 0)),
            Err(CryptoError::Open)
        );
        assert!(!sealed.bytes.windows(6).any(|w| w == b"pw-123"));
    }

    #[test]
    fn an_old_key_still_opens_after_a_new_one_is_added() {
        let (old, new) = (generate_key(), format!("knew:{}", BASE64.encode([7u8; 32])));
        let sealed = ring(&[&old]).seal(b"x", b"ad").expect("seal");
        let rotated = ring(&[&new, &old]);
        assert_eq!(rotated.open(&sealed, b"ad").expect("open"), b"x");
        assert_eq!(rotated.seal(b"y", b"ad").expect("seal").key_id, "knew");
        assert!(matches!(
            ring(&[&new]).open(&sealed, b"ad"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn malformed_keys_are_named_by_position_only() {
        let err = KeyRing::parse(&[SecretString::new("k1:c2hvcnQ=")]).expect_err("short key");
        assert_eq!(err, CryptoError::BadKey { index: 0 });
        assert!(!err.to_string().contains("c2hvcnQ"));
        assert_eq!(KeyRing::parse(&[]).expect_err("empty"), CryptoError::NoKey);
    }
}
