//! Single-use WebSocket tickets through the authenticator: once, within their lifetime, for
//! their chat, as the principal that asked — whose credential must still authenticate.

use std::{sync::Arc, time::Duration};

use nexora_auth::{
    AuthError, Authenticator, Credential, Field, InvalidInput, InvalidReason, JwtConfig, JwtKeys,
    MemoryAuditStore, MemoryKeyStore, MemoryTicketStore, NewKey, OwnerId, Principal, RevokeOptions,
    Scopes, SecretBytes, TokenAuthority, TokenRequest, Unavailable,
    audit::{AuditAction, AuditQuery, AuditStore},
    ticket::MAX_CHAT_ID_LEN,
};
use nexora_auth_testkit::{ManualClock, authenticator_builder};

struct Fixture {
    auth: Authenticator,
    tickets: Arc<MemoryTicketStore>,
    audit: Arc<MemoryAuditStore>,
    clock: Arc<ManualClock>,
    owner: OwnerId,
}

fn scopes(list: &[&str]) -> Scopes {
    Scopes::new(list.iter().copied()).unwrap()
}

fn fixture() -> Fixture {
    let tickets = Arc::new(MemoryTicketStore::new());
    let audit = Arc::new(MemoryAuditStore::new());
    let clock = Arc::new(ManualClock::starting_now());
    let secret = SecretBytes::new(b"ticket-test-secret-of-32+ bytes long".to_vec());
    let auth = authenticator_builder(Arc::new(MemoryKeyStore::new()))
        .tokens(
            TokenAuthority::new(
                JwtKeys::hs256(&secret).unwrap(),
                JwtConfig::new("nexora", "nexora-api").leeway(Duration::ZERO),
            )
            .unwrap(),
        )
        .ws_tickets(tickets.clone())
        .audit(audit.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    Fixture {
        auth,
        tickets,
        audit,
        clock,
        owner: OwnerId::new("alice"),
    }
}

impl Fixture {
    fn app(&self) -> Principal {
        Principal::new(
            self.owner.clone(),
            Credential::Internal,
            scopes(&["agents:read"]),
        )
    }

    async fn key(&self) -> (nexora_auth::CreatedKey, Principal) {
        let created = self
            .auth
            .create_key(&self.app(), NewKey::named("ws"))
            .await
            .unwrap();
        let principal = self.auth.authenticate(created.key.expose()).await.unwrap();
        (created, principal)
    }

    async fn ticket(&self, principal: &Principal, chat: Option<&str>) -> String {
        let issued = self.auth.issue_ticket(principal, chat).await.unwrap();
        issued.ticket.expose().to_owned()
    }
}

fn refused(result: Result<Principal, AuthError>) -> InvalidReason {
    match result {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("want a bad credential, got {other:?}"),
    }
}

#[tokio::test]
async fn a_ticket_is_accepted_once_as_the_principal_that_asked() {
    let f = fixture();
    let (created, key) = f.key().await;
    let issued = f.auth.issue_ticket(&key, Some("chat-1")).await.unwrap();
    assert_eq!(issued.expires_in, 30);
    let ticket = issued.ticket.expose();
    assert!(ticket.starts_with("nxt_") && ticket.len() == 36);
    assert!(
        !format!("{issued:?}").contains(ticket),
        "Debug prints the ticket"
    );
    let principal = f.auth.redeem_ticket(ticket, Some("chat-1")).await.unwrap();
    assert_eq!(principal.credential(), &Credential::ApiKey(created.info.id));
    assert_eq!(principal.scopes(), key.scopes());
    assert_eq!(
        refused(f.auth.redeem_ticket(ticket, Some("chat-1")).await),
        InvalidReason::UnknownTicket
    );
    assert!(f.tickets.is_empty(), "a used ticket is gone from the store");
}

#[tokio::test]
async fn a_ticket_names_its_chat() {
    let f = fixture();
    let (_, key) = f.key().await;
    let for_one = f.ticket(&key, Some("chat-1")).await;
    assert_eq!(
        refused(f.auth.redeem_ticket(&for_one, Some("chat-2")).await),
        InvalidReason::TicketForAnotherChat
    );
    // Presented at the wrong chat, it is used up all the same.
    assert_eq!(
        refused(f.auth.redeem_ticket(&for_one, Some("chat-1")).await),
        InvalidReason::UnknownTicket
    );
    let for_any = f.ticket(&key, None).await;
    assert!(f.auth.redeem_ticket(&for_any, Some("chat-9")).await.is_ok());
    for (chat, field_problem) in [
        (String::new(), "empty"),
        ("x".repeat(MAX_CHAT_ID_LEN + 1), "too long"),
        ("a\u{7}b".to_owned(), "control character"),
    ] {
        assert!(
            matches!(
                f.auth.issue_ticket(&key, Some(&chat)).await,
                Err(AuthError::InvalidInput(InvalidInput {
                    field: Field::ChatId,
                    ..
                }))
            ),
            "{field_problem}"
        );
    }
}

#[tokio::test]
async fn a_ticket_expires_and_is_pruned() {
    let f = fixture();
    let (_, key) = f.key().await;
    let ticket = f.ticket(&key, None).await;
    let kept = f.ticket(&key, None).await;
    f.clock.advance(time::Duration::seconds(30));
    assert_eq!(
        refused(f.auth.redeem_ticket(&ticket, None).await),
        InvalidReason::UnknownTicket
    );
    assert_eq!(
        f.auth.prune_tickets().await.unwrap(),
        1,
        "the other expired one"
    );
    assert!(f.tickets.is_empty());
    drop(kept);
}

#[tokio::test]
async fn the_credential_must_still_authenticate_at_use() {
    let f = fixture();
    let (created, key) = f.key().await;
    let ticket = f.ticket(&key, Some("c")).await;
    f.auth
        .revoke_key(&f.app(), created.info.id, RevokeOptions::key_only())
        .await
        .unwrap();
    assert_eq!(
        refused(f.auth.redeem_ticket(&ticket, Some("c")).await),
        InvalidReason::Revoked
    );
}

/// A ticket asked for with a login token or a derived token stands for that token, and lives
/// no longer than it.
#[tokio::test]
async fn tickets_of_tokens_stand_for_the_token() {
    let f = fixture();
    let login = f
        .auth
        .issue_token(&f.owner, &scopes(&["agents:read"]))
        .unwrap();
    let as_jwt = f.auth.authenticate(login.token.expose()).await.unwrap();
    let ticket = f.ticket(&as_jwt, None).await;
    let redeemed = f.auth.redeem_ticket(&ticket, None).await.unwrap();
    assert!(matches!(
        redeemed.credential(),
        Credential::AccessToken { .. }
    ));

    let (created, key) = f.key().await;
    let derived = f
        .auth
        .derive_token(&key, TokenRequest::new().with_ttl_secs(10))
        .await
        .unwrap();
    let as_derived = f
        .auth
        .authenticate(derived.token.token.expose())
        .await
        .unwrap();
    let issued = f.auth.issue_ticket(&as_derived, None).await.unwrap();
    assert_eq!(issued.expires_in, 10, "no longer than the token");
    let redeemed = f
        .auth
        .redeem_ticket(issued.ticket.expose(), None)
        .await
        .unwrap();
    assert_eq!(redeemed.key_id(), Some(created.info.id));
    // The derived token's key revoked: its tickets die too.
    let another = f.ticket(&as_derived, None).await;
    f.auth
        .revoke_key(&f.app(), created.info.id, RevokeOptions::key_only())
        .await
        .unwrap();
    assert_eq!(
        refused(f.auth.redeem_ticket(&another, None).await),
        InvalidReason::Revoked
    );
}

#[tokio::test]
async fn malformed_tickets_and_missing_stores() {
    let f = fixture();
    for bad in [
        "",
        "nxt_short",
        "nxr_0123456789012345678901234567890",
        "nxt_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    ] {
        assert_eq!(
            refused(f.auth.redeem_ticket(bad, None).await),
            InvalidReason::MalformedTicket,
            "{bad:?}"
        );
    }
    let without = authenticator_builder(Arc::new(MemoryKeyStore::new()))
        .build()
        .unwrap();
    assert!(matches!(
        without.issue_ticket(&f.app(), None).await,
        Err(AuthError::Unavailable(Unavailable::NoTicketStore))
    ));
}

#[tokio::test]
async fn each_issue_is_audited_without_the_ticket() {
    let f = fixture();
    let (_, key) = f.key().await;
    let ticket = f.ticket(&key, Some("chat-7")).await;
    let events = f
        .audit
        .list(&AuditQuery::for_owner(f.owner.clone(), 100))
        .await
        .unwrap();
    let issued: Vec<_> = events
        .iter()
        .filter(|e| e.action == AuditAction::TicketIssued)
        .collect();
    assert_eq!(issued.len(), 1, "{events:?}");
    let text = format!("{:?} {}", issued[0], issued[0].detail.to_json());
    assert!(!text.contains(&ticket), "{text}");
    assert!(text.contains("chat-7"), "{text}");
}
