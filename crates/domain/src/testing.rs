//! What test support in every crate shares (feature `testing`).

/// Whether the tests run under CI (`CI=true` or `CI=1`), where a missing service (PostgreSQL,
/// Redis) is a failure rather than a reason to skip.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}
