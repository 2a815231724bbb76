//! `rotator token …`: make bearer tokens and the hashes `[[auth.identities]]` stores.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::Subcommand;

use crate::api::auth::TokenHash;

/// Tokens shorter than this are refused: the server stores a fast hash, which is safe only for
/// tokens too random to guess.
const MIN_TOKEN_LEN: usize = 32;
/// The most read from stdin.
const MAX_TOKEN_LEN: usize = 4096;

/// Bearer-token helpers.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Read a token from stdin and print its SHA-256, for `token_sha256` in the config.
    Hash,
    /// Print a new random token (256 bits) and its SHA-256.
    Generate,
}

/// Runs a token command.
pub fn run(command: TokenCommand) -> ExitCode {
    match command {
        TokenCommand::Hash => hash_stdin(),
        TokenCommand::Generate => {
            let token = format!("rtr_{}", hex::encode(rand::random::<[u8; 32]>()));
            println!("token        {token}");
            println!("token_sha256 {}", TokenHash::of(&token).to_hex());
            ExitCode::SUCCESS
        }
    }
}

fn hash_stdin() -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("paste the token, then press Ctrl-D");
    }
    let mut text = String::new();
    if let Err(error) = stdin
        .lock()
        .take(MAX_TOKEN_LEN as u64 + 2)
        .read_to_string(&mut text)
    {
        eprintln!("error: cannot read the token from stdin: {error}");
        return ExitCode::FAILURE;
    }
    let token = text.trim_end_matches(['\n', '\r']);
    match check(token) {
        Ok(()) => {
            println!("{}", TokenHash::of(token).to_hex());
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("error: {reason}");
            ExitCode::from(2)
        }
    }
}

/// Whether a token is one the server could accept and that resists guessing.
fn check(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is shorter than {MIN_TOKEN_LEN} characters; use `rotator token generate`"
        ));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(format!("the token is longer than {MAX_TOKEN_LEN} bytes"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_or_unsendable_tokens_are_refused() {
        assert!(check("short").is_err());
        assert!(check(&"x".repeat(31)).is_err());
        assert!(check(&format!("{} x", "y".repeat(40))).is_err());
        assert!(check(&"é".repeat(40)).is_err());
        assert!(check(&format!("rtr_{}", "a".repeat(64))).is_ok());
    }
}
