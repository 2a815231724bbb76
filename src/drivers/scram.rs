//! SCRAM-SHA-256 password verifiers (RFC 5802, RFC 7677) in PostgreSQL's stored format, computed
//! on the client so that `ALTER ROLE` carries the verifier, never the password.
//!
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64 with padding, where
//! `SaltedPassword = Hi(password, salt, iterations)` (PBKDF2-HMAC-SHA-256),
//! `StoredKey = SHA-256(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::SecretString;

/// PostgreSQL's default `scram_iterations`.
pub const ITERATIONS: u32 = 4096;
/// PostgreSQL's salt length in bytes.
pub const SALT_LEN: usize = 16;

/// Why no verifier could be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The password holds a character outside printable ASCII. PostgreSQL would SASLprep-normalise
    /// it, and a client-side verifier must match that normalisation exactly; generated passwords
    /// are always printable ASCII.
    #[error("the password must be printable ASCII for a client-side SCRAM verifier")]
    NotPrintableAscii,
    /// The iteration count is 0.
    #[error("the iteration count must be positive")]
    NoIterations,
    /// The HMAC could not be keyed (cannot happen with SHA-256; kept to avoid a panic path).
    #[error("HMAC key setup failed")]
    Hmac,
}

/// A verifier for `password` with a fresh random salt and [`ITERATIONS`].
///
/// # Errors
///
/// See [`ScramError`].
pub fn verifier(password: &SecretString) -> Result<SecretString, ScramError> {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    verifier_with(password.expose(), &salt, ITERATIONS)
}

/// A verifier for `password` with the given salt and iteration count.
///
/// # Errors
///
/// See [`ScramError`].
///
/// # Examples
///
/// ```
/// use rotator::drivers::scram::verifier_with;
/// let v = verifier_with("pencil", b"0123456789abcdef", 4096).unwrap();
/// assert!(v.expose().starts_with("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$"));
/// ```
pub fn verifier_with(
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<SecretString, ScramError> {
    // PostgreSQL leaves pure-ASCII passwords un-normalised (`pg_saslprep`); restricting to
    // printable ASCII keeps both sides byte-identical without a SASLprep implementation.
    if !password.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ScramError::NotPrintableAscii);
    }
    if iterations == 0 {
        return Err(ScramError::NoIterations);
    }
    let salted = hi(password.as_bytes(), salt, iterations)?;
    let client_key = hmac(&salted, b"Client Key")?;
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key")?;
    Ok(SecretString::new(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key),
    )))
}

/// `Hi()` of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; 32], ScramError> {
    let keyed = Hmac::<Sha256>::new_from_slice(password).map_err(|_| ScramError::Hmac)?;
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut result = u;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (r, b) in result.iter_mut().zip(u) {
            *r ^= b;
        }
    }
    Ok(result)
}

fn hmac(key: &[u8], message: &[u8]) -> Result<[u8; 32], ScramError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| ScramError::Hmac)?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example salt and password; the keys were computed independently with Python's
    /// `hashlib.pbkdf2_hmac` and `hmac`.
    #[test]
    fn matches_an_independent_implementation() {
        let salt = STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .expect("valid base64");
        let v = verifier_with("pencil", &salt, 4096).expect("ascii");
        assert_eq!(
            v.expose(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn fresh_salts_differ_and_non_printable_passwords_are_refused() {
        let pw = SecretString::new("same-password");
        let a = verifier(&pw).expect("ascii");
        let b = verifier(&pw).expect("ascii");
        assert_ne!(a, b);
        assert_eq!(
            verifier(&SecretString::new("é")),
            Err(ScramError::NotPrintableAscii)
        );
        assert_eq!(
            verifier(&SecretString::new("tab\t")),
            Err(ScramError::NotPrintableAscii)
        );
        assert_eq!(verifier_with("x", b"s", 0), Err(ScramError::NoIterations));
    }
}
