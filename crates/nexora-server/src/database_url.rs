//! The database URL, which may carry a password, and its redacted form for logs and messages.

use std::fmt;

use url::{Position, Url};

/// What stands in for a redacted password, parameter value or URL.
pub(crate) const REDACTED: &str = "[redacted]";

/// Query parameters whose values are shown in the redacted form: the connection settings sqlx
/// reads from a Postgres URL, except `password`. Every other parameter's value is redacted,
/// because libpq and its users put secrets in more of them (`sslpassword`, a misspelt
/// `passwd`, …) than any deny-list would name.
const HARMLESS_PARAMETERS: &[&str] = &[
    "application_name",
    "dbname",
    "host",
    "hostaddr",
    "options",
    "port",
    "ssl-ca",
    "ssl-cert",
    "ssl-key",
    "ssl-mode",
    "ssl-root-cert",
    "sslcert",
    "sslkey",
    "sslmode",
    "sslrootcert",
    "statement-cache-capacity",
    "user",
];

/// Whether `name` is one of the [`HARMLESS_PARAMETERS`]: a connection setting sqlx reads whose
/// value is never a secret.
pub(crate) fn is_harmless_parameter(name: &str) -> bool {
    HARMLESS_PARAMETERS.contains(&name)
}

/// A database URL as configured (`--database` / `NEXORA_DATABASE_URL`).
///
/// It may hold credentials: a password in its user-info (`postgres://user:secret@host/db`) or in
/// a query parameter (`?password=secret`, which libpq and sqlx accept). So `Display` and `Debug`
/// show only [`DatabaseUrl::redacted`], and the URL itself is reached through
/// [`DatabaseUrl::expose`], to connect with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as configured, credentials included: for connecting, never for printing.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every credential replaced by `[redacted]`; see [`redact`].
    pub(crate) fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// Infallible, so clap never echoes a refused value in an error message.
impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// `url` with its credentials replaced by `[redacted]`, for logs and error messages:
///
/// - the password of the user-info (`postgres://user:[redacted]@host/db`); the user name stays;
/// - the value of every query parameter other than the known harmless connection settings
///   (`?sslmode=require&password=[redacted]`), and any query text without `=`;
/// - the fragment.
///
/// A URL that the `url` crate cannot parse, or that has an `@` after its host (a password
/// written without percent-encoding, whose `/`, `?` or `#` cut the authority short), is shown as
/// its scheme and `[redacted]` when it holds an `@` or the word "password" anywhere, and as
/// written otherwise (such as a bare file path). A URL with nothing to redact is returned as
/// written.
pub(crate) fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) if !parsed[Position::BeforePath..].contains('@') => redact_parsed(url, &parsed),
        _ => redact_unparsed(url),
    }
}

fn redact_parsed(original: &str, url: &Url) -> String {
    let mut changed = false;
    let mut out = String::with_capacity(original.len());
    // Password positions are only sliced when there is a password: without one, `url`
    // debug-asserts that there is no user-info at all.
    if url.password().is_some() {
        out.push_str(&url[..Position::BeforePassword]);
        out.push_str(REDACTED);
        out.push_str(&url[Position::AfterPassword..Position::AfterPath]);
        changed = true;
    } else {
        out.push_str(&url[..Position::AfterPath]);
    }
    if let Some(query) = url.query() {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let name = url::form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(name, _)| name.into_owned())
                .unwrap_or_default();
            match pair.split_once('=') {
                _ if HARMLESS_PARAMETERS.contains(&name.as_str()) => out.push_str(pair),
                // An empty value hides nothing.
                Some((_, "")) => out.push_str(pair),
                Some((raw_name, _)) => {
                    out.push_str(raw_name);
                    out.push('=');
                    out.push_str(REDACTED);
                    changed = true;
                }
                // Text without `=` may be the tail of a value that held a raw `&`.
                None => {
                    out.push_str(REDACTED);
                    changed = true;
                }
            }
        }
    }
    if url.fragment().is_some() {
        out.push('#');
        out.push_str(REDACTED);
        changed = true;
    }
    if changed { out } else { original.to_owned() }
}

fn redact_unparsed(url: &str) -> String {
    let may_hold_a_secret = url.contains('@') || url.to_ascii_lowercase().contains("password");
    if !may_hold_a_secret {
        return url.to_owned();
    }
    match url.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            format!("{scheme}://{REDACTED}")
        }
        _ => REDACTED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn passwords_and_unknown_parameter_values_are_redacted() {
        for (url, want) in [
            (
                "postgres://postgres:s3cretpw@127.0.0.1:5432/test",
                "postgres://postgres:[redacted]@127.0.0.1:5432/test",
            ),
            // Percent-encoded `@`, `:` and `/` in the password.
            (
                "postgresql://app:p%40ss%3Aw%2Frd@db.internal/nexora?sslmode=require",
                "postgresql://app:[redacted]@db.internal/nexora?sslmode=require",
            ),
            // An `@` left unencoded: the last one ends the user-info.
            (
                "postgres://app:p@ss@db/nexora",
                "postgres://app:[redacted]@db/nexora",
            ),
            (
                "postgres://db/nexora?user=app&password=s3cret&application_name=api",
                "postgres://db/nexora?user=app&password=[redacted]&application_name=api",
            ),
            (
                "postgres://db/nexora?sslpassword=s3cret&passwd=s3cret&PASSWORD=x",
                "postgres://db/nexora?sslpassword=[redacted]&passwd=[redacted]&PASSWORD=[redacted]",
            ),
            // An encoded parameter name is recognised decoded.
            (
                "postgres://db/nexora?pass%77ord=s3cret",
                "postgres://db/nexora?pass%77ord=[redacted]",
            ),
            (
                "postgres://app:pw@db/nexora#s3cret",
                "postgres://app:[redacted]@db/nexora#[redacted]",
            ),
            // Not URLs the parser accepts, or with an `@` past the host.
            (
                "postgres://app:s3cret@db:notaport/nexora",
                "postgres://[redacted]",
            ),
            (
                "postgres://app:12/s3cret@db/nexora",
                "postgres://[redacted]",
            ),
            ("postgres://app:1?s3cret@db/nexora", "postgres://[redacted]"),
            ("postgres://app:1#s3cret@db/nexora", "postgres://[redacted]"),
            ("host=db user=app password=s3cret", "[redacted]"),
            ("host=db user=app PassWord=s3cret", "[redacted]"),
            ("app:s3cret@db", "[redacted]"),
            // The tail of a value that held a raw `&`.
            (
                "postgres://db/nexora?password=s3&cret&sslmode=require",
                "postgres://db/nexora?password=[redacted]&[redacted]&sslmode=require",
            ),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn a_url_without_credentials_is_shown_as_written() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://db/nexora?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
            "postgres://db/nexora?password=",
            "sqlite://nexora-data/nexora.db",
            "sqlite:///var/lib/nexora data/nexora.db",
            "sqlite:nexora.db",
            "nexora-data/nexora.db",
            "mysql://db/nexora",
            "",
        ] {
            assert_eq!(redact(url), url);
        }
    }

    #[test]
    fn display_and_debug_are_redacted() {
        let url = DatabaseUrl::from("postgres://app:s3cret@db/nexora?password=s3cret".to_owned());
        let want = "postgres://app:[redacted]@db/nexora?password=[redacted]";
        assert_eq!(url.to_string(), want);
        assert_eq!(format!("{url:?}"), format!("DatabaseUrl({want:?})"));
        assert_eq!(
            url.expose(),
            "postgres://app:s3cret@db/nexora?password=s3cret"
        );
    }

    /// Passwords of any characters, each with a marker no URL part contains.
    fn password() -> impl Strategy<Value = String> {
        "[^\u{0}-\u{1f}]{0,24}".prop_map(|noise| format!("Zq{noise}9Xw"))
    }

    proptest! {
        /// However the user-info password is written — percent-encoded as a URL library writes
        /// it, or raw with its `@`, `:`, `/`, `?`, `#` and `%` as they come — neither it nor
        /// the query's `password=` survives redaction, not even in part.
        #[test]
        fn no_password_survives_redaction(
            userinfo in password(),
            query in password(),
            raw_userinfo in any::<bool>(),
        ) {
            let mut url = Url::parse("postgres://app@db.internal:5432/nexora")
                .expect("a valid URL");
            url.set_password(Some(&userinfo)).expect("a URL with a host takes a password");
            url.query_pairs_mut()
                .append_pair("sslmode", "require")
                .append_pair("password", &query);
            let written = if raw_userinfo {
                format!(
                    "postgres://app:{userinfo}@db.internal:5432/nexora?{}",
                    url.query().unwrap_or_default()
                )
            } else {
                url.to_string()
            };
            let redacted = redact(&written);
            for marker in ["Zq", "9Xw"] {
                prop_assert!(!redacted.contains(marker), "{written} → {redacted}");
            }
        }

        /// Redaction never panics, and what it returns holds no `@`-delimited user-info
        /// password: it is either the URL as written or has `[redacted]` in it.
        #[test]
        fn redaction_is_total(text in any::<String>()) {
            let redacted = redact(&text);
            prop_assert!(redacted == text || redacted.contains(REDACTED));
        }
    }
}
