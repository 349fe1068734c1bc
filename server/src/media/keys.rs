//! Channel signing keys: generated on first use and kept under the data directory, so a
//! channel's public key survives restarts.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use swarm::SigningKey;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses exactly 32 bytes of hex (surrounding whitespace allowed).
pub fn parse_key_hex(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return Err("a signing key is 64 hex digits (32 bytes)".into());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| "a signing key is 64 hex digits (32 bytes)".to_string())?;
    }
    Ok(out)
}

/// Where channel `name`'s secret key lives under `data_dir`.
pub fn key_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("keys").join(format!("{name}.key"))
}

/// Loads channel `name`'s key from `data_dir`, creating and saving a new one (readable by
/// the owner only) if there is none.
pub fn load_or_create(data_dir: &Path, name: &str) -> Result<SigningKey, String> {
    let path = key_path(data_dir, name);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = parse_key_hex(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(SigningKey::from_bytes(&bytes));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    }
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let dir = data_dir.join("keys");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    writeln!(file, "{}", hex(&secret)).map_err(|e| format!("writing {}: {e}", path.display()))?;
    tracing::info!(channel = name, path = %path.display(), "generated a new channel signing key");
    Ok(SigningKey::from_bytes(&secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        let k = [0xabu8; 32];
        assert_eq!(parse_key_hex(&hex(&k)).unwrap(), k);
        assert!(parse_key_hex("zz").is_err());
        assert!(parse_key_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn created_once_then_loaded() {
        let dir = std::env::temp_dir().join(format!("shoal-keys-{}", std::process::id()));
        let a = load_or_create(&dir, "x").unwrap();
        let b = load_or_create(&dir, "x").unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
