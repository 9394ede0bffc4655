//! The in-memory reference stores pass the kit (their change feeds included), and the failure
//! checks catch a failing store.

use std::sync::Arc;

use nexora_auth::{MemoryAuditStore, MemoryKeyStore, MemoryTicketStore, MemoryUserStore};
use nexora_auth_testkit::failure::{FlakyStore, key_store_backend_down};

nexora_auth_testkit::key_store_conformance!(async { MemoryKeyStore::new() });
nexora_auth_testkit::user_store_conformance!(async { MemoryUserStore::new() });
nexora_auth_testkit::audit_store_conformance!(async { MemoryAuditStore::new() });
nexora_auth_testkit::ticket_store_conformance!(async { MemoryTicketStore::new() });
nexora_auth_testkit::change_feed_conformance!(keys: async { MemoryKeyStore::new() });
nexora_auth_testkit::change_feed_conformance!(users: async { MemoryUserStore::new() });

/// The failure check itself must fail on a healthy store (which answers "not found").
#[test]
#[should_panic(expected = "must be Err(StoreError::Unavailable)")]
fn backend_down_check_rejects_a_healthy_store() {
    nexora_auth_testkit::run(async {
        key_store_backend_down(Arc::new(FlakyStore::new(MemoryKeyStore::new()))).await;
    });
}
