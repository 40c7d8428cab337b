//! # Convo's port contracts
//!
//! The behaviour every adapter of the domain's outbound ports must show, written once as
//! library code so that each adapter proves it with the same assertions: the storage ports
//! (`users`, `rooms`, `messages`, run by `convo-sql` on SQLite and PostgreSQL), and the
//! stateful ports (`session`, `ticket`, `rate_limit`, `cache`, `events`, `presence`, run by the
//! in-process adapters of `convo-memory` and the Redis adapters of `convo-redis`). This crate
//! sits outside the hexagon, beside the adapters: it depends on the domain only and is used by
//! adapter crates' tests, never by the server.
//!
//! Each port has a module of `pub async fn` bodies, each taking a fresh adapter as `Arc<P>`
//! (`P` may be the concrete adapter or `dyn Port`; for storage, any [`Storage`]: one adapter
//! of the three storage ports), and a macro that turns every body into its own `#[tokio::test]`:
//!
//! ```text
//! // crates/memory/tests/contract.rs (needs tokio with `macros` and `rt-multi-thread`)
//! mod sessions {
//!     convo_contract::session_store_contract!(async { std::sync::Arc::new(InMemorySessionStore::new()) });
//! }
//! // crates/sql/tests/contract.rs: the store, and its database kept until the test ends
//! mod sqlite {
//!     convo_contract::storage_contract!(async {
//!         let db = TestDatabase::sqlite().await;
//!         (std::sync::Arc::new(db.store().clone()), db)
//!     });
//! }
//! ```
//!
//! The factory expression is pasted into every test, so each test gets its own adapter. It may
//! also evaluate to an `Option<Arc<_>>`: `None` skips the test (a Redis suite without
//! `REDIS_URL`); and either may come paired with a guard the test keeps until it ends (a
//! store's throw-away database, see [`Fixture`]). Without the macros, `session::cases()` and its
//! siblings list the same bodies by name for a custom driver. [`storage`] holds the fixtures
//! that fill a store, for a driver's own tests beyond the contract.
//!
//! The bodies run on real time with short durations (a TTL of 1 s, sleeps of 1.2 s), never a
//! paused clock, so a remote store is held to the same timing; and each body works on fresh
//! ids and keys, so suites may run in parallel against one shared server.

pub mod cache;
pub mod events;
pub mod fixture;
pub mod messages;
pub mod presence;
pub mod rate_limit;
pub mod rooms;
pub mod session;
pub mod storage;
pub mod ticket;
pub mod users;

pub use fixture::{Case, Fixture, fixture};
pub use storage::Storage;

/// Runs every [`SessionStore`](convo_domain::SessionStore) body as its own test.
#[macro_export]
macro_rules! session_store_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* session:
            create_then_touch_returns_the_session,
            touch_of_an_unknown_session_is_none,
            session_expires_after_its_ttl_without_touch,
            touch_slides_the_expiry,
            revoke_ends_only_that_session,
            second_revoke_returns_false,
            revoke_of_an_expired_session_returns_false,
            revoke_all_ends_every_session_of_the_user_only,
            revoke_all_leaves_out_expired_sessions,
            revoke_all_of_a_user_without_sessions_is_empty,
            alive_many_answers_for_each_session_in_order,
            alive_many_does_not_extend_a_session,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::session_store_contract! { @bodies tests($factory) }
    };
}

/// Runs every [`TicketStore`](convo_domain::TicketStore) body as its own test.
#[macro_export]
macro_rules! ticket_store_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* ticket:
            issued_ticket_redeems_once,
            unknown_ticket_is_none,
            ticket_expires_after_its_ttl,
            tickets_are_independent,
            concurrent_redeems_succeed_exactly_once,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::ticket_store_contract! { @bodies tests($factory) }
    };
}

/// Runs every [`RateLimiter`](convo_domain::RateLimiter) body as its own test.
#[macro_export]
macro_rules! rate_limiter_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* rate_limit:
            points_are_allowed_then_limited,
            acquire_each_takes_a_point_per_entry_first_come_first_served,
            keys_are_independent,
            peek_never_consumes,
            retry_after_counts_down_to_the_window_end,
            limited_attempts_do_not_extend_the_window,
            window_reopens_after_it_elapses,
            concurrent_acquires_allow_exactly_the_points,
            release_gives_back_a_point_of_the_open_window,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::rate_limiter_contract! { @bodies tests($factory) }
    };
}

/// Runs every [`MessageCache`](convo_domain::MessageCache) body as its own test.
#[macro_export]
macro_rules! message_cache_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* cache:
            empty_cache_misses_with_a_ticket,
            fill_then_latest_hits_with_the_latest_slice,
            limit_over_a_complete_history_returns_all,
            limit_over_an_incomplete_history_misses,
            has_more_when_older_messages_exist,
            next_message_is_appended,
            a_batch_of_stored_messages_is_appended_in_order,
            first_message_of_an_empty_room_is_appended,
            message_after_a_gap_is_never_served_without_the_gap,
            repeated_store_report_changes_nothing,
            fill_after_a_store_is_refused,
            a_ticket_fills_at_most_once,
            fill_after_an_edit_is_refused,
            fill_after_a_delete_is_refused,
            edits_replace_content_in_hits,
            deletes_vanish_from_hits,
            delete_reported_before_its_store_never_shows,
            edit_reported_before_its_store_never_shows_old_content,
            never_more_than_recent_messages_are_kept,
            a_page_read_again_shows_every_change_since,
            readers_of_an_unchanged_room_share_one_page,
            rooms_are_independent,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::message_cache_contract! { @bodies tests($factory) }
    };
}

/// Runs every [`EventBus`](convo_domain::EventBus) body as its own test.
#[macro_export]
macro_rules! event_bus_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* events:
            subscriber_receives_a_published_event,
            sessions_topic_delivers_session_revocations,
            memberships_topic_delivers_ended_memberships_apart_from_the_room,
            other_topics_are_not_received,
            every_subscriber_receives,
            order_is_preserved_for_one_publisher,
            a_batch_of_new_messages_reaches_each_subscriber_once_in_order,
            publish_without_subscribers_is_ok,
            publishing_after_a_subscriber_drops_still_works,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::event_bus_contract! { @bodies tests($factory) }
    };
}

/// Runs every [`Presence`](convo_domain::Presence) body as its own test.
#[macro_export]
macro_rules! presence_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* presence:
            first_connection_comes_online,
            last_disconnection_goes_offline,
            online_among_reports_exactly_the_connected_users,
            stray_disconnect_does_not_go_negative,
            concurrent_connections_report_one_first_and_one_last,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::presence_contract! { @bodies tests($factory) }
    };
}

/// Runs every [`UserRepository`](convo_domain::UserRepository) body as its own test.
#[macro_export]
macro_rules! user_repository_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* users:
            created_user_is_found_by_id_and_by_email,
            unknown_users_are_not_found,
            email_is_unique,
            username_is_unique_ignoring_case,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::user_repository_contract! { @bodies tests($factory) }
    };
}

/// Runs every [`RoomRepository`](convo_domain::RoomRepository) body as its own test.
#[macro_export]
macro_rules! room_repository_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* rooms:
            created_room_has_its_owner_as_only_member,
            room_name_is_unique_ignoring_case_including_unicode,
            room_is_found_by_id_and_by_name_in_any_case,
            missing_rooms_are_not_found,
            directory_lists_rooms_starting_with_the_prefix_by_name,
            directory_prefix_ignores_case_including_unicode,
            directory_prefix_treats_percent_and_underscore_literally,
            directory_respects_the_limit,
            rooms_of_lists_the_users_rooms_most_recently_active_first,
            membership_tells_no_such_room_outsider_and_member,
            second_join_is_idempotent,
            join_of_a_missing_room_is_room_not_found,
            second_leave_is_idempotent,
            members_are_ordered_by_join_time_then_username,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::room_repository_contract! { @bodies tests($factory) }
    };
}

/// Runs every [`MessageRepository`](convo_domain::MessageRepository) body as its own test,
/// except [`messages::senders_through_two_handles_on_one_store_get_seqs_without_gaps`], which
/// needs a second handle on the same store.
#[macro_export]
macro_rules! message_repository_contract {
    (@bodies $($mode:tt)*) => {
        $crate::__suite! { $($mode)* messages:
            messages_get_consecutive_seqs_and_carry_the_author,
            insert_into_a_missing_room_is_room_not_found,
            insert_by_an_outsider_is_not_a_member_and_uses_no_seq,
            a_batch_stores_the_good_messages_and_refuses_each_bad_one_alone,
            a_batch_of_refusals_only_uses_no_seq,
            concurrent_batches_interleave_without_gaps,
            retry_with_the_same_client_message_id_returns_the_original,
            client_message_ids_are_per_author,
            concurrent_inserts_with_the_same_client_message_id_store_one_message,
            sixteen_concurrent_senders_get_seqs_one_to_forty_eight_without_gaps,
            history_without_cursor_is_the_latest_page_ascending,
            history_pages_back_with_before,
            history_pages_forward_with_after,
            history_between_after_and_before_is_bounded_on_both_sides,
            history_of_an_empty_room_is_empty,
            deleted_messages_are_hidden_and_keep_their_seq,
            deleted_messages_do_not_count_towards_a_page,
            edit_replaces_the_content_and_sets_edited_at,
            edit_of_a_missing_or_deleted_message_is_message_not_found,
            delete_of_a_missing_message_is_false,
            retry_of_a_deleted_message_is_refused_and_posts_nothing,
        }
    };
    ($factory:expr $(,)?) => {
        $crate::message_repository_contract! { @bodies tests($factory) }
    };
}

/// Runs the three storage suites (users, rooms, messages) against a [`Storage`] driver: every
/// body as its own test, side by side in the calling module.
#[macro_export]
macro_rules! storage_contract {
    ($factory:expr $(,)?) => {
        $crate::user_repository_contract!($factory);
        $crate::room_repository_contract!($factory);
        $crate::message_repository_contract!($factory);
    };
}

/// Expands one port's list of bodies either into tests or into a list of [`Case`]s, so that the
/// list is written once.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite {
    (tests($factory:expr) $module:ident: $($body:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                // The guard (a store's throw-away database, say) lives until the test ends.
                let ::std::option::Option::Some((adapter, _guard)) = $crate::fixture($factory.await) else {
                    ::std::eprintln!("skipped {}: no adapter", ::std::stringify!($body));
                    return;
                };
                $crate::$module::$body(adapter).await;
            }
        )+
    };
    (cases $module:ident: $($body:ident),+ $(,)?) => {
        ::std::vec![$(
            $crate::Case {
                name: ::std::stringify!($body),
                run: |adapter| ::std::boxed::Box::pin($crate::$module::$body(adapter)),
            }
        ),+]
    };
}
