//! The key pattern and checksum rule the README publishes ("When a key leaks"), and the
//! scanner rules shipped in `docs/scanners/`, checked as written: the rules' pattern is the
//! README's and matches generated keys wherever they appear, and nothing a character longer or
//! shorter; the checksum as the README words it — written again in Rust below, and the Python
//! reference implementation — accepts every generated key and refuses each one with a
//! character changed.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use nexora_auth::{ApiKey, KeyId};
use regex::Regex;

/// The pattern as the README publishes it.
const PATTERN: &str = r"\bnxr_[0-9A-Za-z]{60}\b";

fn repository_file(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The README's checksum rule, transcribed: the last 6 characters are the CRC-32 of the first
/// 58, in base 62 over `0-9A-Za-z`, most significant digit first, padded with `0` to 6.
fn documented_checksum_holds(text: &str) -> bool {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let bytes = text.as_bytes();
    if bytes.len() != 64 || !text.starts_with("nxr_") {
        return false;
    }
    if !bytes[4..].iter().all(|b| ALPHABET.contains(b)) {
        return false;
    }
    let mut crc = u64::from(crc32fast::hash(&bytes[..58]));
    let mut digits = [0u8; 6];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[usize::try_from(crc % 62).expect("below 62")];
        crc /= 62;
    }
    bytes[58..] == digits
}

/// Keys as the server makes them: random ones, and ids at the edges of their range.
fn generated_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..1_000)
        .map(|_| {
            ApiKey::generate()
                .expect("OS randomness")
                .expose()
                .to_owned()
        })
        .collect();
    for bytes in [[0u8; 16], [0xff; 16], [0x80; 16]] {
        let key = ApiKey::generate_for(KeyId::from_bytes(bytes)).expect("OS randomness");
        keys.push(key.expose().to_owned());
    }
    keys
}

/// Every single-character change of `key` after the prefix, to a character of the alphabet.
fn one_character_off(key: &str) -> impl Iterator<Item = String> + '_ {
    (4..key.len()).flat_map(move |at| {
        ['0', 'z', 'A'].into_iter().filter_map(move |c| {
            let mut changed = key.to_owned();
            changed.replace_range(at..=at, &c.to_string());
            (changed != key).then_some(changed)
        })
    })
}

/// The pattern quoted in a rule file: the text between the delimiters after `marker`.
fn pattern_in(file: &str, marker: &str, open: &str, close: &str) -> String {
    let text = repository_file(file);
    let line = text
        .lines()
        .find(|line| line.trim_start().starts_with(marker))
        .unwrap_or_else(|| panic!("{file}: no {marker} line"));
    let start = line.find(open).expect("an opening quote") + open.len();
    let end = line[start..].find(close).expect("a closing quote") + start;
    line[start..end].to_owned()
}

#[test]
fn the_rules_publish_the_readmes_pattern() {
    let readme = repository_file("README.md");
    assert!(
        readme.contains(&format!("```text\n{PATTERN}\n```")),
        "the README publishes {PATTERN}"
    );
    assert_eq!(
        pattern_in("docs/scanners/gitleaks.toml", "regex", "'''", "'''"),
        PATTERN
    );
    assert_eq!(
        pattern_in("docs/scanners/trufflehog.yaml", "key:", "'", "'"),
        PATTERN
    );
    let python = repository_file("docs/scanners/nexora_key_check.py");
    // The README shows the reference implementation as it is.
    for line in [
        "def is_nexora_key(text):",
        "and text[58:] == base62(zlib.crc32(text[:58].encode(\"ascii\")), 6)",
        "number, digit = divmod(number, 62)",
    ] {
        assert!(readme.contains(line) && python.contains(line), "{line}");
    }
}

#[test]
fn the_pattern_finds_generated_keys_wherever_they_appear() {
    let pattern = Regex::new(PATTERN).expect("the pattern compiles");
    for key in generated_keys() {
        for context in [
            format!("NEXORA_API_KEY={key}\n"),
            format!(r#"{{"api_key": "{key}"}}"#),
            format!("wss://api.example.com/api/ws/chat-1?token={key}&x=1"),
            format!("Authorization: Bearer {key}"),
            key.clone(),
        ] {
            let found: Vec<&str> = pattern.find_iter(&context).map(|m| m.as_str()).collect();
            assert_eq!(found, [key.as_str()], "{context}");
        }
        for not_a_key in [
            format!("{key}A"),
            key[..63].to_owned(),
            format!("x{key}"),
            key.replacen("nxr_", "nxs_", 1),
        ] {
            assert!(!pattern.is_match(&not_a_key), "{not_a_key}");
        }
    }
}

#[test]
fn the_documented_checksum_accepts_real_keys_and_refuses_one_character_off() {
    for key in generated_keys() {
        assert!(documented_checksum_holds(&key), "{key}");
        assert!(ApiKey::parse(&key).is_ok());
        for changed in one_character_off(&key) {
            assert!(!documented_checksum_holds(&changed), "{changed}");
            // The server's own parser agrees with the rule as written.
            assert!(ApiKey::parse(&changed).is_err(), "{changed}");
        }
    }
}

/// The Python reference implementation agrees, key for key (python3 is on every CI machine;
/// without it the test says so loudly and checks the rest).
#[test]
fn the_python_reference_agrees() {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scanners/nexora_key_check.py");
    let keys = generated_keys();
    let mut candidates: Vec<(String, bool)> = Vec::new();
    for key in keys.iter().take(50) {
        candidates.push((key.clone(), true));
        candidates.extend(one_character_off(key).take(20).map(|k| (k, false)));
    }
    candidates.push(("nxr_short".to_owned(), false));
    candidates.push((keys[0].to_uppercase(), false));
    let spawned = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED the Python reference check: cannot run python3 ({e})\n"
            );
            return;
        }
    };
    let input: String = candidates.iter().map(|(k, _)| format!("{k}\n")).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the candidates");
    let output = child.wait_with_output().expect("python3 ends");
    assert!(output.status.success());
    let verdicts: Vec<String> = String::from_utf8(output.stdout)
        .expect("text")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(verdicts.len(), candidates.len());
    for ((candidate, valid), verdict) in candidates.iter().zip(&verdicts) {
        let want = if *valid { "valid" } else { "invalid" };
        assert_eq!(verdict, want, "{candidate}");
        assert_eq!(documented_checksum_holds(candidate), *valid, "{candidate}");
    }
}
