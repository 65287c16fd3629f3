//! The client side of SCRAM-SHA-256 (RFC 5802 / 7677, as PostgreSQL uses it, without channel
//! binding), for authenticating to upstreams with a held password; plus MD5 for old servers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    #[error("the server's SCRAM message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours")]
    NonceMismatch,
    #[error("the server's signature is wrong: it does not know the password (possible impostor)")]
    BadServerSignature,
    #[error("the server asked for {0} PBKDF2 iterations, more than sluice allows")]
    TooManyIterations(u32),
}

pub struct ScramClient {
    password: Vec<u8>,
    client_nonce: String,
    client_first_bare: String,
    salted: Option<[u8; 32]>,
    auth_message: String,
}

impl ScramClient {
    pub fn new(password: &str) -> Self {
        let raw: [u8; 18] = rand::rng().random();
        let client_nonce = B64.encode(raw);
        ScramClient {
            password: password.as_bytes().to_vec(),
            client_first_bare: format!("n=,r={client_nonce}"),
            client_nonce,
            salted: None,
            auth_message: String::new(),
        }
    }

    /// The client-first-message: GS2 header `n,,` (no channel binding) and the bare part.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Takes server-first-message, returns client-final-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(B64.decode(v).map_err(|_| ScramError::Malformed("salt"))?),
                Some(("i=", v)) => {
                    iterations = Some(v.parse::<u32>().map_err(|_| ScramError::Malformed("iterations"))?)
                }
                _ => {}
            }
        }
        let nonce = nonce.ok_or(ScramError::Malformed("no nonce"))?;
        let salt = salt.ok_or(ScramError::Malformed("no salt"))?;
        let iterations = iterations.ok_or(ScramError::Malformed("no iteration count"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        if iterations == 0 {
            return Err(ScramError::Malformed("zero iterations"));
        }
        if iterations > 1_000_000 {
            return Err(ScramError::TooManyIterations(iterations));
        }
        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(client_key);
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, self.auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature.iter()).map(|(k, s)| k ^ s).collect();
        self.salted = Some(salted);
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks server-final-message: the server must prove it knows the password too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let signature =
            text.split(',').find_map(|p| p.strip_prefix("v=")).ok_or(ScramError::Malformed("no server signature"))?;
        let signature = B64.decode(signature).map_err(|_| ScramError::Malformed("signature"))?;
        let salted = self.salted.ok_or(ScramError::Malformed("final before continue"))?;
        let server_key = hmac(&salted, b"Server Key");
        let mut mac = HmacSha256::new_from_slice(&server_key).map_err(|_| ScramError::Malformed("key"))?;
        mac.update(self.auth_message.as_bytes());
        mac.verify_slice(&signature).map_err(|_| ScramError::BadServerSignature)
    }
}

/// Distinct (password, salt, iterations) kept before the memory starts over.
const MAX_SALTED: usize = 256;

/// SCRAM's SaltedPassword, PBKDF2 over the password: 4,096 rounds of HMAC-SHA-256 by default,
/// most of the CPU a new upstream connection costs sluice (about 10 ms). A role's salt and
/// iteration count stay the same from one connection to the next, so the result is remembered,
/// keyed by a digest of all three. It is held in memory only, as the passwords themselves are.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    static SALTED: OnceLock<Mutex<HashMap<[u8; 32], [u8; 32]>>> = OnceLock::new();
    let key: [u8; 32] = Sha256::new()
        .chain_update((password.len() as u64).to_be_bytes())
        .chain_update(password)
        .chain_update(iterations.to_be_bytes())
        .chain_update(salt)
        .finalize()
        .into();
    let remembered = SALTED.get_or_init(Default::default);
    if let Some(salted) = remembered.lock().get(&key) {
        return *salted;
    }
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
    let mut remembered = remembered.lock();
    if remembered.len() >= MAX_SALTED {
        remembered.clear();
    }
    remembered.insert(key, salted);
    salted
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `md5` + hex(md5(hex(md5(password + user)) + salt)), as PostgreSQL's md5 method expects.
pub fn md5_password(user: &str, password: &str, salt: &[u8]) -> String {
    use md5::Md5;
    let inner = hex(&Md5::digest([password.as_bytes(), user.as_bytes()].concat()));
    let outer = hex(&Md5::digest([inner.as_bytes(), salt].concat()));
    format!("md5{outer}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server side written from the RFC, to check the client against.
    fn server_proof_check(password: &str, client: &mut ScramClient) {
        let salt = b"0123456789abcdef";
        let iterations = 4096;
        let first = client.client_first();
        let client_nonce = first.split("r=").nth(1).unwrap();
        let server_first = format!("r={client_nonce}SERVER,s={},i={iterations}", B64.encode(salt));
        let client_final = client.client_final(server_first.as_bytes()).unwrap();

        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(client_key);
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        let auth_message = format!("{},{server_first},{without_proof}", &first[3..]);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof = B64.decode(proof).unwrap();
        let recovered: Vec<u8> = proof.iter().zip(signature.iter()).map(|(p, s)| p ^ s).collect();
        assert_eq!(Sha256::digest(&recovered).as_slice(), stored_key.as_slice());

        let server_key = hmac(&salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature));
        client.verify_server_final(server_final.as_bytes()).unwrap();
        assert!(client.verify_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn client_proof_verifies_against_an_rfc_server() {
        let mut client = ScramClient::new("pencil");
        server_proof_check("pencil", &mut client);
        // The second time the salted password is remembered; the proof must be as good.
        server_proof_check("pencil", &mut ScramClient::new("pencil"));
        // A different password with the same salt is not mistaken for the first.
        server_proof_check("pencil2", &mut ScramClient::new("pencil2"));
    }

    #[test]
    fn a_nonce_that_does_not_extend_ours_is_refused() {
        let mut client = ScramClient::new("pw");
        let err = client.client_final(b"r=someoneelse,s=AAAA,i=4096").unwrap_err();
        assert!(matches!(err, ScramError::NonceMismatch));
        assert!(client.client_final(b"garbage").is_err());
    }

    #[test]
    fn md5_matches_postgres() {
        // md5("postgrespostgres") is 3175bce1…, the value PostgreSQL stores for that user and password;
        // the salted answer below was computed with Python's hashlib.
        assert_eq!(md5_password("postgres", "postgres", &[1, 2, 3, 4]), "md568be9ed08db75f318087ab337aaea044");
    }
}
