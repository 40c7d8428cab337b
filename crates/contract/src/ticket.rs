//! The contract of [`TicketStore`]: a ticket carries its grant (principal and token times) until
//! its TTL ends, and can be redeemed exactly once, however many redemptions race for it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta};
use convo_domain::{AccessGrant, Principal, SessionId, TicketStore, UserId};
use tokio::time::sleep;

use crate::fixture::{Case, now};

/// The TTL of tickets meant to expire during a body.
const SHORT: Duration = Duration::from_secs(1);
/// Comfortably past [`SHORT`].
const PAST_SHORT: Duration = Duration::from_millis(1200);
/// The TTL of tickets that must outlive a body.
const LONG: Duration = Duration::from_secs(60);

/// Every body of this module, by name.
pub fn cases<T: TicketStore + ?Sized + 'static>() -> Vec<Case<T>> {
    crate::ticket_store_contract! { @bodies cases }
}

/// A grant as a token carries it: times to the whole second.
fn new_grant() -> AccessGrant {
    let issued_at = DateTime::from_timestamp(now().timestamp(), 0).expect("a time in range");
    AccessGrant {
        principal: Principal { user_id: UserId::generate(), session_id: SessionId::generate() },
        issued_at,
        expires_at: issued_at + TimeDelta::seconds(600),
    }
}

/// A ticket no other body or run uses.
fn fresh_ticket() -> String {
    format!("contract-{}", SessionId::generate())
}

async fn issue<T: TicketStore + ?Sized>(store: &T, ttl: Duration) -> (String, AccessGrant) {
    let (ticket, grant) = (fresh_ticket(), new_grant());
    store.issue(&ticket, grant, ttl).await.expect("issue a ticket");
    (ticket, grant)
}

async fn redeem<T: TicketStore + ?Sized>(store: &T, ticket: &str) -> Option<AccessGrant> {
    store.redeem(ticket).await.expect("redeem a ticket")
}

pub async fn issued_ticket_redeems_once<T: TicketStore + ?Sized>(store: Arc<T>) {
    let (ticket, grant) = issue(&*store, LONG).await;
    assert_eq!(
        redeem(&*store, &ticket).await,
        Some(grant),
        "the ticket carries its grant: principal and token expiry"
    );
    assert_eq!(redeem(&*store, &ticket).await, None, "a ticket is single-use");
}

pub async fn unknown_ticket_is_none<T: TicketStore + ?Sized>(store: Arc<T>) {
    issue(&*store, LONG).await;
    assert_eq!(redeem(&*store, &fresh_ticket()).await, None);
}

pub async fn ticket_expires_after_its_ttl<T: TicketStore + ?Sized>(store: Arc<T>) {
    let (short, _) = issue(&*store, SHORT).await;
    let (long, grant) = issue(&*store, LONG).await;
    sleep(PAST_SHORT).await;
    assert_eq!(redeem(&*store, &short).await, None, "an expired ticket names nobody");
    assert_eq!(redeem(&*store, &long).await, Some(grant), "another ticket's ttl is its own");
}

pub async fn tickets_are_independent<T: TicketStore + ?Sized>(store: Arc<T>) {
    let (first, first_grant) = issue(&*store, LONG).await;
    let (second, second_grant) = issue(&*store, LONG).await;
    assert_eq!(redeem(&*store, &second).await, Some(second_grant));
    assert_eq!(redeem(&*store, &first).await, Some(first_grant), "redeeming one leaves the other");
}

pub async fn concurrent_redeems_succeed_exactly_once<T: TicketStore + ?Sized + 'static>(store: Arc<T>) {
    let (ticket, grant) = issue(&*store, LONG).await;
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (store, ticket) = (Arc::clone(&store), ticket.clone());
            tokio::spawn(async move { redeem(&*store, &ticket).await })
        })
        .collect();
    let mut winners = Vec::new();
    for attempt in attempts {
        if let Some(redeemed) = attempt.await.expect("a redeem task panicked") {
            winners.push(redeemed);
        }
    }
    assert_eq!(winners, vec![grant], "exactly one redemption wins");
}
