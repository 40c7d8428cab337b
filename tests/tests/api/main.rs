//! Convo's black-box suite: the real server, started by [`convo_tests::spawn_app`] and its
//! kin, driven over HTTP and WebSocket. One test binary with a module per area, so the server
//! is built and linked once for the whole suite.

mod auth;
mod cancellation;
mod examples;
mod messages;
mod operations;
mod redis_cache;
mod redis_instances;
mod redis_outage;
mod robustness;
mod rooms;
mod websocket;
