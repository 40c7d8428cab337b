# Convo: `make run` serves on the embedded default (SQLite + in-process adapters);
# `make test` runs every test against SQLite and the local PostgreSQL.
CARGO ?= cargo

.PHONY: run test drill browser example docs bench services openapi contract fmt lint build clean

## Build in release mode and serve on the embedded default (migrations are applied at start-up).
run:
	$(CARGO) build --release --locked --bin convo
	./target/release/convo serve

## Run the domain crate's example service, then the whole test suite (starts PostgreSQL and Redis
## here if they are down).
test: services example
	$(CARGO) test --workspace --all-targets --locked
	tests/browser/run

## Fault drills (about a minute after the build): two `convo` processes on a Redis and a
## PostgreSQL cluster of the drills' own, under continuous REST and WebSocket traffic, while Redis,
## an instance or PostgreSQL is killed and brought back; prints a table of what held.
## `make drill DRILLS=kill-instance` runs only the named ones.
drill: services
	$(CARGO) build --locked -p convo-server -p convo-tests --bin convo --bin convo-drill
	$(or $(CARGO_TARGET_DIR),target)/debug/convo-drill $(DRILLS)

## The web client at / in headless Chromium (Debian's chromium package), against a server on SQLite
## and two instances on PostgreSQL + Redis; skipped with a warning without Chromium, except in CI.
browser: services
	tests/browser/run

## The domain reused alone: a moderation bot over in-memory ports of its own.
example:
	$(CARGO) run --locked -p convo-domain --example moderation_bot

## The domain crate's API documentation, which must build without a warning.
docs:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked -p convo-domain --no-deps

## Measure (release builds), on SQLite and on PostgreSQL + Redis, with the server's CPU apart
## from the load generator's: history reads by room id and by name (64 connections); the write
## path (REST sends into one room and into 64 rooms, one pipelined WebSocket sender into a room
## of 200 subscribers, the same sender at a fixed 8,800 sends/s, then into a room of none); WebSocket fan-out, send to receipt, to 200 subscribers at
## rising rates (the highest loss-free with p99 within 50 ms), at 8,800 msgs/s (on one instance,
## and split over two through Redis), and to 1,000 at 400 msgs/s;
## server memory per idle WebSocket, and through a storm of logins.
bench: services
	$(CARGO) build --release --locked -p convo-server -p convo-tests --bins
	./target/release/convo-read-bench sqlite 10 64
	./target/release/convo-read-bench postgres-redis 10 64
	./target/release/convo-write-bench sqlite 10 200 window:256
	./target/release/convo-write-bench postgres-redis 10 200 window:256
	./target/release/convo-write-bench sqlite 10 200 rate:8800
	./target/release/convo-write-bench postgres-redis 10 200 rate:8800
	./target/release/convo-write-bench sqlite 10 0 window:256
	./target/release/convo-write-bench postgres-redis 10 0 window:256
	./target/release/convo-ws-bench ladder 200 5 sqlite
	./target/release/convo-ws-bench ladder 200 5 postgres-redis
	./target/release/convo-ws-bench fanout 200 8800 10 sqlite
	./target/release/convo-ws-bench fanout 200 8800 10 postgres-redis
	./target/release/convo-ws-bench fanout 1000 400 10 postgres-redis
	./target/release/convo-ws-bench fanout 200 8800 10 postgres-redis two-instances
	./target/release/convo-ws-bench idle 10000
	./target/release/convo-login-bench 20 16

services:
	@.ci/services

## The document against the running server (debug build, embedded SQLite, a free port):
## schemathesis with every check and phase, then the generated Python and TypeScript clients
## driving every operation. Installs its pinned tools (virtualenvs under the target directory,
## npm packages from tests/clients/typescript/package-lock.json) on first use.
contract:
	tests/contract/schemathesis.sh
	tests/clients/run.sh

## Rewrite openapi/openapi.json from the code.
openapi:
	UPDATE_OPENAPI=1 $(CARGO) test -p convo-api --test openapi_document --locked

fmt:
	$(CARGO) fmt --all

lint: docs
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

build:
	$(CARGO) build --workspace --locked

clean:
	$(CARGO) clean
