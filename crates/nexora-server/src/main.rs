//! `nexora-server`: the Nexora API's authentication endpoints as a runnable server.
//!
//! `cargo run -p nexora-server` serves on `127.0.0.1:8080` with an embedded SQLite database in
//! `./nexora-data`; `--database postgres://…` switches to Postgres, so several instances can
//! share one database. See the README for the quickstart and `--help` for every option.
//!
//! What the server keeps secret outside its API:
//!
//! - The database URL is printed only redacted ([`database_url::redact`]): a password in its
//!   user-info or query reads `[redacted]` in logs, error messages and the `Debug` of the
//!   parsed command line, and `--help` does not show `NEXORA_DATABASE_URL`'s value.
//! - The data directory is 0700 and the SQLite database (with its WAL and shared-memory files)
//!   and the generated secrets are 0600; looser modes found at start are tightened with a
//!   warning ([`private_files`]).

#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program reports on its standard streams"
)]

mod app;
mod config;
mod database_url;
mod db;
mod openapi;
mod page;
mod private_files;
mod scanning;

use std::{
    io::{BufRead, IsTerminal},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use nexora_auth::{
    ApiKey, Authenticator, CacheConfig, NewKey, PasswordPolicy, Scopes, SecretString,
    ThrottlePolicy, normalize_email,
};
use nexora_auth_http::Api;

use crate::config::{AuthArgs, CommonArgs, ServeArgs, StartupError, fail};

/// The Nexora API's authentication server.
#[derive(Debug, Parser)]
#[command(
    name = "nexora-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Manage password users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys from the command line (for automation).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the OpenAPI document the server serves at `/api/openapi.json` (for client
    /// generators; needs no database).
    Openapi,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input. Prints the new user's id.
    Create {
        /// The user's email (case-insensitive).
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',', default_values_t = default_scopes())]
        scopes: Vec<String>,
    },
    /// List users: id, email, scopes and `disabled` for disabled users, one per line.
    List,
    /// Disable a user: no login, and none of their tokens or keys authenticate (401) until
    /// `user enable`. Keys are kept, not revoked.
    Disable {
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user: their unexpired tokens and unrevoked keys work again.
    Enable {
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// Delete a user: their tokens and keys answer 401 from the next request on.
    Delete {
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// Replace a user's scopes; every token and key of the user is capped at them from the
    /// next request on.
    SetScopes {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// Comma-separated scopes (may be empty: `--scopes ''`).
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        scopes: Vec<String>,
    },
    /// Set a user's own rate limit, shared by all of their keys and tokens (it replaces the
    /// server's `--owner-rate-limit` for them), or clear it with `--rate none`.
    SetLimit {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// `LIMIT/PERIOD_SECS` (`1000/60`), or `none`.
        #[arg(long)]
        rate: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create an API key for a user. Prints the key (shown this once) on standard output.
    Create {
        /// The owner's email.
        #[arg(long)]
        email: String,
        /// The key's name.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes (default: all of the user's).
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
    },
    /// List a user's keys (never their values).
    List {
        /// The owner's email.
        #[arg(long)]
        email: String,
    },
    /// Check a key's format offline (prefix, alphabet, length, checksum); no database needed.
    /// The key is read from standard input so it stays out of shell history.
    Check,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List audit events, newest first, one per line: time, action, actor, owner, target,
    /// client, outcome and detail (JSON), tab-separated; `-` for an empty field.
    List {
        /// Only this user's events: an email, or a user id (for a deleted user).
        #[arg(long)]
        user: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn default_scopes() -> Vec<String> {
    vec![
        nexora_auth_http::scopes::AGENTS_READ.to_owned(),
        nexora_auth_http::scopes::AUDIT_READ.to_owned(),
        nexora_auth_http::scopes::KEYS_MANAGE.to_owned(),
    ]
}

/// Who the admin commands act as, in the audit trail.
const CLI: nexora_auth::audit::Actor = nexora_auth::audit::Actor::system("cli");

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEXORA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), StartupError> {
    match cli.command {
        None => serve(&cli.common, &cli.auth, &cli.serve).await,
        Some(Command::Serve(args)) => serve(&cli.common, &cli.auth, &args).await,
        Some(Command::User(cmd)) => user_command(&cli.common, &cli.auth, cmd).await,
        Some(Command::Key(KeyCommand::Check)) => check_key(),
        Some(Command::Key(cmd)) => key_command(&cli.common, &cli.auth, cmd).await,
        Some(Command::Audit(cmd)) => audit_command(&cli.common, &cli.auth, cmd).await,
        Some(Command::Openapi) => {
            let json = openapi::document(cli.serve.serves_secret_scanning())
                .to_pretty_json()
                .or_else(|e| fail(format!("cannot write the OpenAPI document: {e}")))?;
            println!("{json}");
            Ok(())
        }
    }
}

/// Builds the authenticator over the configured database, with `cache` as its verification
/// cache.
async fn authenticator(
    common: &CommonArgs,
    auth: &AuthArgs,
    cache: CacheConfig,
    serve: Option<&ServeArgs>,
) -> Result<(Authenticator, db::Database), StartupError> {
    let database = db::open(common).await?;
    let mut builder = Authenticator::builder(database.key_store(), config::peppers(common)?);
    if let Some(args) = serve {
        builder = builder
            .owner_rate_limit(args.owner_rate_limit)
            .credit_lease_block(args.credit_lease_block);
        if let Some((limits, throttle)) =
            config::shared_limits(common, args, ThrottlePolicy::default())?
        {
            builder = builder.rate_limits(limits).login_throttle_backend(throttle);
        }
    }
    let authenticator = builder
        .users(database.user_store())
        .ws_tickets(database.ticket_store())
        .ws_ticket_ttl(Duration::from_secs(auth.ws_ticket_ttl_secs))
        .derived_token_max_ttl(Duration::from_secs(auth.derived_token_max_ttl_secs))
        .audit(database.audit_store())
        .verification_cache(cache)
        .tokens(config::token_authority(common, auth)?)
        .password_policy(PasswordPolicy::default())
        .login_throttle(ThrottlePolicy::default())
        .build()
        .or_else(|e| fail(format!("configuration: {e}")))?;
    Ok((authenticator, database))
}

async fn serve(common: &CommonArgs, auth: &AuthArgs, args: &ServeArgs) -> Result<(), StartupError> {
    let proxies = args.trusted_proxies()?;
    let (authenticator, database) =
        authenticator(common, auth, args.verification_cache(), Some(args)).await?;
    let scanning = scanning::from_args(args).await?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .or_else(|e| fail(format!("cannot listen on {}: {e}", args.bind)))?;
    let addr = listener
        .local_addr()
        .or_else(|e| fail(format!("cannot read the bound address: {e}")))?;
    let flusher = authenticator
        .spawn_last_used_flusher(Duration::from_secs(args.last_used_flush_secs.max(1)));
    if let Some(retention) = args.audit_retention() {
        tokio::spawn(prune_audit_events(authenticator.clone(), retention));
    }
    let leases = authenticator.clone();
    let mut api = Api::new(authenticator)
        .trusted_proxies(proxies)
        .max_body_bytes(args.max_body_bytes);
    if let Some(scanning) = scanning {
        api = api.secret_scanning(scanning);
    }
    let app = app::router(app::AppState::new(api, database), args);
    tracing::info!(%addr, database = %config::database_url(common), "nexora-server listening on http://{addr}");
    tracing::info!(
        "manage API keys in a browser at http://{addr}{}",
        page::PAGE_PATH
    );
    // TCP_NODELAY: small frames (a WebSocket Close right after a revocation, a short JSON
    // answer) leave at once instead of waiting on a delayed ACK (up to 40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .or_else(|e| fail(format!("server error: {e}")))?;
    match leases.return_credit_leases().await {
        Ok(n) => tracing::info!(returned = n, "unspent credit leases returned"),
        Err(e) => tracing::warn!(error = %e, "could not return unspent credit leases"),
    }
    match flusher.shutdown().await {
        Ok(n) => tracing::info!(flushed = n, "stopped; last-used times flushed"),
        Err(e) => tracing::warn!(error = %e, "stopped; could not flush last-used times"),
    }
    Ok(())
}

/// Deletes audit events older than `retention` now and every hour, for as long as the server
/// runs. A failure is logged and retried at the next hour.
async fn prune_audit_events(authenticator: Authenticator, retention: Duration) {
    let mut hourly = tokio::time::interval(Duration::from_secs(60 * 60));
    hourly.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        hourly.tick().await;
        match authenticator.prune_audit_events(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "deleted audit events past their retention"),
            Err(e) => tracing::warn!(error = %e, "audit pruning failed; retrying in an hour"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// The admin commands run one operation and exit: nothing they read is read twice, so they keep
/// no cache.
fn one_shot_cache() -> CacheConfig {
    CacheConfig::disabled()
}

fn read_stdin_line(what: &str) -> Result<SecretString, StartupError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .or_else(|e| fail(format!("cannot read {what} from standard input: {e}")))?;
    let trimmed = line.trim_end_matches(['\n', '\r']).to_owned();
    // Overwrite the buffer's copy; `SecretString` zeroizes its own on drop.
    line.clear();
    if trimmed.is_empty() {
        return fail(format!("no {what} on standard input"));
    }
    Ok(SecretString::new(trimmed))
}

fn scopes(list: &[String]) -> Result<Scopes, StartupError> {
    Scopes::new(list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()))
        .or_else(|e| fail(format!("--scopes: {e}")))
}

/// What a command prints for a refusal of the core: the broken rule in the words of the API
/// (`Password must be at least 8 characters`), else the error itself.
fn detail(e: &nexora_auth::AuthError) -> String {
    match e {
        nexora_auth::AuthError::InvalidInput(input) => {
            nexora_auth_http::validation::input_issue(input).msg
        }
        other => other.to_string(),
    }
}

async fn user_command(
    common: &CommonArgs,
    auth: &AuthArgs,
    cmd: UserCommand,
) -> Result<(), StartupError> {
    let (authenticator, db) = authenticator(common, auth, one_shot_cache(), None).await?;
    let failed = |e: nexora_auth::AuthError| StartupError(detail(&e));
    match cmd {
        UserCommand::Create {
            email,
            password_stdin: _,
            scopes: list,
        } => {
            let password = read_stdin_line("password")?;
            let user = authenticator
                .register_user(&email, &password, scopes(&list)?)
                .await
                .map_err(|e| StartupError(format!("cannot create user: {}", detail(&e))))?;
            println!("{}", user.id);
        }
        UserCommand::List => {
            let users = authenticator
                .list_users()
                .await
                .map_err(|e| StartupError(detail(&e)))?;
            for u in users {
                let state = if u.disabled { "\tdisabled" } else { "" };
                println!(
                    "{}\t{}\t{}{state}",
                    u.id,
                    u.email,
                    u.scopes.to_space_separated()
                );
            }
        }
        UserCommand::Disable { email } => {
            let user = find_user(&db, &email).await?;
            authenticator
                .disable_user(&user.id, &CLI)
                .await
                .map_err(failed)?;
            eprintln!("disabled {}", user.email);
        }
        UserCommand::Enable { email } => {
            let user = find_user(&db, &email).await?;
            authenticator
                .enable_user(&user.id, &CLI)
                .await
                .map_err(failed)?;
            eprintln!("enabled {}", user.email);
        }
        UserCommand::Delete { email } => {
            let user = find_user(&db, &email).await?;
            authenticator
                .delete_user(&user.id, &CLI)
                .await
                .map_err(failed)?;
            eprintln!("deleted {}", user.email);
        }
        UserCommand::SetScopes {
            email,
            scopes: list,
        } => {
            let user = find_user(&db, &email).await?;
            let scopes = scopes(&list)?;
            authenticator
                .set_user_scopes(&user.id, &scopes, &CLI)
                .await
                .map_err(failed)?;
            eprintln!("{} now holds: {}", user.email, scopes.to_space_separated());
        }
        UserCommand::SetLimit { email, rate } => {
            let user = find_user(&db, &email).await?;
            let limit = match rate.trim() {
                "none" => None,
                text => Some(config::parse_rate_limit(text).or_else(fail)?),
            };
            authenticator
                .set_owner_rate_limit(&user.id, limit)
                .await
                .map_err(failed)?;
            match limit {
                Some(l) => eprintln!(
                    "{} is limited to {} requests per {} s",
                    user.email, l.limit, l.period_secs
                ),
                None => eprintln!("{} has no rate limit of their own", user.email),
            }
        }
    }
    Ok(())
}

async fn find_user(
    db: &db::Database,
    email: &str,
) -> Result<nexora_auth::UserRecord, StartupError> {
    match db
        .user_store()
        .find_user_by_email(&normalize_email(email))
        .await
    {
        Ok(Some(user)) => Ok(user),
        Ok(None) => fail(format!("no user with email {email}")),
        Err(e) => fail(format!("database: {e}")),
    }
}

async fn key_command(
    common: &CommonArgs,
    auth: &AuthArgs,
    cmd: KeyCommand,
) -> Result<(), StartupError> {
    let (authenticator, db) = authenticator(common, auth, one_shot_cache(), None).await?;
    match cmd {
        KeyCommand::Create {
            email,
            name,
            scopes: list,
        } => {
            let user = find_user(&db, &email).await?;
            let mut request = NewKey::named(name);
            if let Some(list) = list {
                request = request.with_scopes(scopes(&list)?);
            }
            let created = authenticator
                .create_key_for(&user.id, &user.scopes, request)
                .await
                .map_err(|e| StartupError(format!("cannot create key: {}", detail(&e))))?;
            eprintln!(
                "created key {} ({}) for {}; it is shown only now:",
                created.info.id, created.info.name, user.email
            );
            println!("{}", created.key.expose());
        }
        KeyCommand::List { email } => {
            let user = find_user(&db, &email).await?;
            // The application acting for the user: every key within the user's scopes.
            let acting = nexora_auth::Principal::new(
                user.id.clone(),
                nexora_auth::Credential::Internal,
                user.scopes.clone(),
            );
            for k in authenticator
                .list_keys(&acting)
                .await
                .map_err(|e| StartupError(detail(&e)))?
            {
                println!(
                    "{}\t{}\t{}\t{}",
                    k.id,
                    k.display,
                    k.name,
                    k.scopes.to_space_separated()
                );
            }
        }
        KeyCommand::Check => return check_key(),
    }
    Ok(())
}

async fn audit_command(
    common: &CommonArgs,
    auth: &AuthArgs,
    cmd: AuditCommand,
) -> Result<(), StartupError> {
    let (authenticator, db) = authenticator(common, auth, one_shot_cache(), None).await?;
    let AuditCommand::List { user, limit } = cmd;
    let owner = match user {
        Some(email) if email.contains('@') => Some(find_user(&db, &email).await?.id),
        Some(id) => Some(nexora_auth::OwnerId::new(id)),
        None => None,
    };
    let query = match owner {
        Some(owner) => nexora_auth::audit::AuditQuery::for_owner(owner, limit),
        None => nexora_auth::audit::AuditQuery::all(limit),
    };
    let events = authenticator
        .audit_store()
        .map_err(|e| StartupError(detail(&e)))?
        .list(&query)
        .await
        .or_else(|e| fail(format!("database: {e}")))?;
    let or_dash = |field: Option<String>| field.unwrap_or_else(|| "-".to_owned());
    for event in events {
        let at = event
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!(
            "{at}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            event.action,
            event.actor,
            or_dash(event.owner.map(|o| o.to_string())),
            or_dash(event.target),
            or_dash(event.client.map(|c| c.to_string())),
            event.outcome.as_str(),
            event.detail.to_json(),
        );
    }
    Ok(())
}

fn check_key() -> Result<(), StartupError> {
    let key = read_stdin_line("key")?;
    match ApiKey::parse(key.expose()) {
        Ok(parsed) => {
            println!("valid nxr_ key format; id {}", parsed.id());
            Ok(())
        }
        Err(e) => fail(format!("not a valid key: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// `--cache-ceiling-ms` sets the verification cache's ceiling (5 seconds unless given, on
    /// `serve` and without a subcommand alike); 0 turns the cache off.
    #[test]
    fn the_cache_ceiling_comes_from_the_command_line() {
        use std::time::Duration;
        let serve_args = |args: &[&str]| match Cli::try_parse_from(args).expect("valid arguments") {
            Cli {
                command: Some(super::Command::Serve(serve)),
                ..
            } => *serve,
            Cli { serve, .. } => serve,
        };
        for (args, enabled, ceiling) in [
            (&["nexora-server"][..], true, 5000),
            (&["nexora-server", "serve"], true, 5000),
            (
                &["nexora-server", "serve", "--cache-ceiling-ms", "250"],
                true,
                250,
            ),
            (&["nexora-server", "--cache-ceiling-ms", "1500"], true, 1500),
            (
                &["nexora-server", "serve", "--cache-ceiling-ms", "0"],
                false,
                5000,
            ),
        ] {
            let cache = serve_args(args).verification_cache();
            assert_eq!(cache.is_enabled(), enabled, "{args:?}");
            assert_eq!(
                cache.ceiling_duration(),
                Duration::from_millis(ceiling),
                "{args:?}"
            );
        }
    }

    /// The parsed command line, as a panic or a debug print would show it, holds the database
    /// URL only redacted.
    #[test]
    fn the_debug_of_the_command_line_redacts_the_database_url() {
        for args in [
            &[
                "nexora-server",
                "--database",
                "postgres://app:Ui9xq7@db/nexora?password=Qp8vn4",
            ][..],
            &[
                "nexora-server",
                "user",
                "list",
                "--database",
                "postgres://app:Ui9xq7@db/nexora?password=Qp8vn4",
            ],
        ] {
            let cli = Cli::try_parse_from(args).expect("valid arguments");
            let debug = format!("{cli:?}");
            assert!(
                debug.contains("postgres://app:[redacted]@db/nexora"),
                "{debug}"
            );
            assert!(
                !debug.contains("Ui9xq7") && !debug.contains("Qp8vn4"),
                "{debug}"
            );
        }
    }
}
