// Drives every operation of a live Convo server through openapi-fetch, typed by the types
// openapi-typescript generated from openapi/openapi.json, and checks at run time that every
// answer holds the generated types: each checker below must have the type of the field it
// checks (the compiler refuses a checker that lets null through for a field typed `string`), so
// a null arriving where the document promises a string fails the run.
//
// Usage: node build/drive.js BASE_URL

import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

type Schemas = components["schemas"];

// A check that fails by throwing, saying where and what.
type Check<T> = (value: unknown, at: string) => value is T;
// One checker per field of T, each of the field's exact type.
type Shape<T> = { [K in keyof T]-?: Check<T[K]> };

function fail(at: string, value: unknown, what: string): never {
  throw new Error(`${at}: ${JSON.stringify(value)} is not ${what}`);
}

const str: Check<string> = (v, at): v is string => typeof v === "string" || fail(at, v, "a string");
const int: Check<number> = (v, at): v is number => Number.isInteger(v) || fail(at, v, "an integer");
const bool: Check<boolean> = (v, at): v is boolean => typeof v === "boolean" || fail(at, v, "a boolean");

function nullable<T>(check: Check<T>): Check<T | null> {
  return (v, at): v is T | null => v === null || check(v, at);
}

function oneOf<const T extends string>(values: readonly T[]): Check<T> {
  return (v, at): v is T => values.includes(v as T) || fail(at, v, `one of ${values.join(", ")}`);
}

function list<T>(check: Check<T>): Check<T[]> {
  return (v, at): v is T[] => {
    if (!Array.isArray(v)) fail(at, v, "an array");
    (v as unknown[]).forEach((item, i) => check(item, `${at}[${i}]`));
    return true;
  };
}

function object<T>(name: string, shape: Shape<T>): Check<T> {
  return (v, at): v is T => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) fail(at, v, `a ${name}`);
    const fields = v as Record<string, unknown>;
    for (const [key, check] of Object.entries(shape) as [string, Check<unknown>][]) {
      check(fields[key], `${at}.${key}`);
    }
    return true;
  };
}

const errorCode: Check<Schemas["ErrorCode"]> = oneOf([
  "VALIDATION_FAILED", "UNAUTHORIZED", "INVALID_CREDENTIALS", "TOO_MANY_ATTEMPTS", "RATE_LIMITED",
  "EMAIL_TAKEN", "USERNAME_TAKEN", "ROOM_NAME_TAKEN", "NOT_A_MEMBER", "NOT_THE_AUTHOR", "ROOM_NOT_FOUND",
  "MESSAGE_NOT_FOUND", "MESSAGE_DELETED", "NOT_FOUND", "FORBIDDEN", "METHOD_NOT_ALLOWED", "PAYLOAD_TOO_LARGE",
  "SERVICE_UNAVAILABLE", "INTERNAL_ERROR",
] as const);
const problem = object<Schemas["Problem"]>("Problem", {
  type: str, title: str, status: int, detail: str, code: errorCode, requestId: str,
});
const user = object<Schemas["User"]>("User", { id: str, email: str, username: str, createdAt: str });
const authResponse = object<Schemas["AuthResponse"]>("AuthResponse", {
  access_token: str, token_type: oneOf(["Bearer"] as const), expires_in: int, user,
});
const wsTicket = object<Schemas["WsTicket"]>("WsTicket", { ticket: str, expiresIn: int });
const room = object<Schemas["Room"]>("Room", {
  id: str, name: str, ownerId: str, createdAt: str, memberCount: int, lastSeq: int,
});
const roomSummary = object<Schemas["RoomSummary"]>("RoomSummary", {
  id: str, name: str, ownerId: str, createdAt: str, memberCount: int, lastSeq: int,
  joinedAt: str, lastMessageAt: nullable(str),
});
const member = object<Schemas["Member"]>("Member", { userId: str, username: str, joinedAt: str, online: bool });
const userRef = object<Schemas["UserRef"]>("UserRef", { id: str, username: str });
const message = object<Schemas["Message"]>("Message", {
  id: str, roomId: str, seq: int, author: userRef, content: str, createdAt: str,
  editedAt: nullable(str), clientMessageId: nullable(str),
});
const messagePage = object<Schemas["MessagePage"]>("MessagePage", { messages: list(message), hasMore: bool });
const health = object<Schemas["Health"]>("Health", { status: str });

let calls = 0;

// The body of an answer with `status`, checked by `check`.
async function expect<T>(
  call: Promise<Answer>,
  status: number,
  check: Check<T> | null,
): Promise<T> {
  const { data, error, response } = await call;
  calls += 1;
  const what = `${response.url} ${status}`;
  if (response.status !== status) throw new Error(`${what}: got ${response.status} ${JSON.stringify(error ?? data)}`);
  const body = data ?? error;
  if (check === null) {
    if (body !== undefined && body !== "") throw new Error(`${what}: expected no body, got ${JSON.stringify(body)}`);
    return undefined as T;
  }
  check(body, what);
  return body as T;
}

type Answer = { data?: unknown; error?: unknown; response: Response };

async function expectProblem(call: Promise<Answer>, status: number, code: Schemas["ErrorCode"]): Promise<void> {
  const answer = await call;
  const body = await expect(Promise.resolve(answer), status, problem);
  const url = answer.response.url;
  if (body.code !== code) throw new Error(`${url}: expected ${code}, got ${body.code}`);
  if (body.status !== status) throw new Error(`${url}: status ${body.status} in the body`);
  const contentType = answer.response.headers.get("content-type");
  if (contentType !== "application/problem+json") throw new Error(`${url}: content type ${contentType}`);
}

async function main(baseUrl: string): Promise<void> {
  const anonymous = createClient<paths>({ baseUrl });
  const as = (token: string) => createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
  const suffix = Math.random().toString(16).slice(2, 10);
  const password = "Passw0rdX";

  const signUp = async (name: string) => {
    const body = { email: `${name}${suffix}@example.com`, username: `${name}${suffix}`, password };
    const auth = await expect(anonymous.POST("/auth/register", { body }), 201, authResponse);
    return { auth, client: as(auth.access_token) };
  };
  const { auth: ada, client: asAda } = await signUp("ada");
  const { auth: bob, client: asBob } = await signUp("bob");

  // Health.
  await expect(anonymous.GET("/health"), 200, health);
  await expect(anonymous.GET("/ready"), 200, object<Schemas["Readiness"]>("Readiness", { status: str, checked: list(str) }));

  // Accounts and sessions.
  const taken = { email: `other${suffix}@example.com`, username: ada.user.username, password };
  await expectProblem(anonymous.POST("/auth/register", { body: taken }), 409, "USERNAME_TAKEN");
  const invalid = { email: `x${suffix}@example.com`, username: "a!", password };
  await expectProblem(anonymous.POST("/auth/register", { body: invalid }), 400, "VALIDATION_FAILED");
  const second = await expect(
    anonymous.POST("/auth/login", { body: { email: ada.user.email, password } }), 200, authResponse);
  await expectProblem(
    anonymous.POST("/auth/login", { body: { email: ada.user.email, password: "Wrong0ne" } }), 401, "INVALID_CREDENTIALS");
  const me = await expect(asAda.GET("/auth/me"), 200, user);
  if (me.id !== ada.user.id) throw new Error("/auth/me answered another user");
  const ticket = await expect(asAda.POST("/ws/ticket"), 200, wsTicket);
  if (ticket.expiresIn !== 30) throw new Error(`ticket lives ${ticket.expiresIn} s`);
  await expectProblem(as("not-a-token").GET("/auth/me"), 401, "UNAUTHORIZED");

  // Rooms.
  const name = `room ${suffix}`;
  const created = await expect(asAda.POST("/chat/room", { body: { name } }), 201, room);
  const roomPath = { params: { path: { roomId: created.id } } };
  await expectProblem(asBob.POST("/chat/room", { body: { name } }), 409, "ROOM_NAME_TAKEN");
  await expectProblem(asBob.POST("/chat/room", { body: { name: "no/slash" } }), 400, "VALIDATION_FAILED");
  await expectProblem(asBob.GET("/chat/room/{roomId}", roomPath), 403, "NOT_A_MEMBER");
  const unknown = { params: { path: { roomId: "0192f000-0000-7000-8000-000000000000" } } };
  await expectProblem(asBob.GET("/chat/room/{roomId}", unknown), 404, "ROOM_NOT_FOUND");
  await expect(asBob.POST("/chat/room/{roomId}/join", roomPath), 200, room);
  await expect(asBob.GET("/chat/room/{roomId}", roomPath), 200, room);
  const found = await expect(
    asBob.GET("/chat/directory", { params: { query: { q: `ROOM ${suffix}`, limit: 10 } } }), 200, list(room));
  if (found.length !== 1 || found[0]?.id !== created.id) throw new Error("the directory missed the room");
  await expectProblem(asBob.GET("/chat/directory", { params: { query: { limit: 0 } } }), 400, "VALIDATION_FAILED");
  const members = await expect(asBob.GET("/chat/room/{roomId}/members", roomPath), 200, list(member));
  if (members.length !== 2) throw new Error(`${members.length} members`);
  const mine = await expect(asBob.GET("/chat/rooms"), 200, list(roomSummary));
  if (mine[0]?.lastMessageAt !== null) throw new Error("lastMessageAt before the first message");

  // Messages.
  const byId = { roomId: created.id, content: "hello", clientMessageId: "k-1" };
  const first = await expect(asBob.POST("/chat/message", { body: byId }), 201, message);
  if (first.editedAt !== null || first.seq !== 1) throw new Error("a fresh message");
  const again = await expect(asBob.POST("/chat/message", { body: byId }), 200, message);
  if (again.id !== first.id) throw new Error("the retry stored a second message");
  const plain = await expect(
    asAda.POST("/chat/message", { body: { chatRoomName: name, content: "hi, by name" } }), 201, message);
  if (plain.clientMessageId !== null) throw new Error("clientMessageId without one");
  const page = await expect(
    asBob.GET("/chat/messages", { params: { query: { roomId: created.id, limit: 10 } } }), 200, messagePage);
  if (page.messages.map((m) => m.seq).join() !== "1,2" || page.hasMore) throw new Error("history page");
  const after = await expect(
    asBob.GET("/chat/messages", { params: { query: { chatRoomName: name, after: 1 } } }), 200, messagePage);
  if (after.messages.length !== 1) throw new Error("history after 1");
  await expectProblem(
    asBob.GET("/chat/messages", { params: { query: { roomId: created.id, before: 0 } } }), 400, "VALIDATION_FAILED");
  const messagePath = { params: { path: { messageId: first.id } } };
  const edited = await expect(
    asBob.PATCH("/chat/message/{messageId}", { ...messagePath, body: { content: "hello again" } }), 200, message);
  if (edited.editedAt === null) throw new Error("an edit without editedAt");
  await expectProblem(
    asAda.PATCH("/chat/message/{messageId}", { ...messagePath, body: { content: "mine now" } }), 403, "NOT_THE_AUTHOR");
  await expect(asBob.DELETE("/chat/message/{messageId}", messagePath), 204, null);
  await expectProblem(asBob.DELETE("/chat/message/{messageId}", messagePath), 404, "MESSAGE_NOT_FOUND");
  await expectProblem(asBob.POST("/chat/message", { body: byId }), 410, "MESSAGE_DELETED");
  await expect(asBob.POST("/chat/room/{roomId}/leave", roomPath), 204, null);
  await expectProblem(
    asBob.POST("/chat/message", { body: { roomId: created.id, content: "x" } }), 403, "NOT_A_MEMBER");

  // Ending sessions.
  const asSecond = as(second.access_token);
  await expect(asSecond.POST("/auth/logout"), 204, null);
  await expectProblem(asSecond.GET("/auth/me"), 401, "UNAUTHORIZED");
  await expect(asAda.POST("/auth/logout-all"), 204, null);
  await expectProblem(asAda.GET("/auth/me"), 401, "UNAUTHORIZED");
  void bob;

  // The checks themselves refuse a string field that is null.
  let refused = false;
  try {
    user({ ...me, email: null }, "user");
  } catch {
    refused = true;
  }
  if (!refused) throw new Error("a null email passed the check");
  console.log(`typescript: ${calls} passed, 0 failed`);
}

const baseUrl = process.argv[2];
if (baseUrl === undefined) throw new Error("usage: node build/drive.js BASE_URL");
await main(baseUrl);
