// Convo's web client. It speaks only the public contract: REST for accounts, rooms and history,
// and one WebSocket (opened with a single-use ticket) for live messages, typing and presence.
// Everything a user or the server wrote is put on the page with textContent, never as HTML.

const PAGE_SIZE = 50;
const TYPING_EVERY_MS = 2000;
const TYPING_SHOWN_MS = 4000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const TOKEN_KEY = "convo.token";

const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  user: null,
  rooms: new Map(), // id -> Room, the rooms the user belongs to
  roomsShown: [], // what the rooms list shows: the user's rooms, or directory results
  current: null, // the open room: { room, member, messages: Map(seq -> entry), hasMore, loadingOlder }
  members: new Map(), // userId -> Member, for the open room
  typing: new Map(), // userId -> { username, timer }
  socket: null,
  connecting: false, // a ticket is being asked for
  ready: false,
  attempt: 0,
  reconnectTimer: null,
  closing: false, // set while the client itself ends the connection (logout)
  pending: new Map(), // ref -> { kind, roomId, content, clientMessageId, element }
  nextRef: 1,
  lastTypingSent: 0,
};

// ---------------------------------------------------------------------------------------------
// Errors

let errorTimer = null;

function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(clearError, 10000);
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

/** A sentence for a problem (REST) or an error frame (WebSocket), by its stable code. */
function describe(code, detail, retryAfterSeconds) {
  switch (code) {
    case "RATE_LIMITED": {
      const wait = retryAfterSeconds ? ` Try again in ${Math.max(1, Math.ceil(retryAfterSeconds))} s.` : "";
      return `You are sending too fast.${wait}`;
    }
    case "NOT_A_MEMBER":
      return "You are not a member of this room: join it first.";
    case "INVALID_CREDENTIALS":
      return "Wrong email or password.";
    case "TOO_MANY_ATTEMPTS":
      return `Too many attempts. Try again in ${Math.max(1, Math.ceil(retryAfterSeconds || 60))} s.`;
    case "EMAIL_TAKEN":
      return "An account with this email exists already: log in instead.";
    case "USERNAME_TAKEN":
      return "This username is taken.";
    case "ROOM_NAME_TAKEN":
      return "A room with this name exists already: find it in the directory.";
    case "ROOM_NOT_FOUND":
      return "This room no longer exists.";
    case "MESSAGE_DELETED":
      return "That message was deleted.";
    case "NOT_THE_AUTHOR":
      return "Only its author can change this message.";
    default:
      return detail || "Something went wrong. Please try again.";
  }
}

class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code;
    this.retryAfter = retryAfter;
  }
  describe() {
    return describe(this.code, this.message, this.retryAfter);
  }
}

// ---------------------------------------------------------------------------------------------
// REST

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { code: "NETWORK", detail: "The server cannot be reached. Check your connection." });
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const retryAfter = Number(response.headers.get("retry-after")) || undefined;
    const error = new ApiError(response.status, data, retryAfter);
    // Any request sent with the token may be the one that finds it revoked; those that come
    // back after the first have nothing new to say.
    if (response.status === 401 && path !== "/auth/login") {
      error.sessionEnded = true;
      sessionEnded();
    }
    throw error;
  }
  return data;
}

/** Runs an action and shows its failure. */
async function attempt(action) {
  try {
    return await action();
  } catch (error) {
    if (error instanceof ApiError) {
      if (!error.sessionEnded) showError(error.describe());
    } else {
      console.error(error);
      showError("Something went wrong. Please try again.");
    }
    return undefined;
  }
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------------------------
// Accounts

function credentials() {
  return {
    email: $("email").value.trim(),
    username: $("username").value.trim(),
    password: $("password").value,
  };
}

async function signIn(path, body) {
  const auth = await attempt(() => api("POST", path, body));
  if (!auth) return;
  clearError();
  state.token = auth.access_token;
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("password").value = "";
  await enterChat(auth.user);
}

async function logout() {
  state.closing = true;
  await attempt(() => api("POST", "/auth/logout"));
  leaveChat();
}

function sessionEnded() {
  if (!state.token) return;
  leaveChat();
  showError("Your session has ended. Please log in again.");
}

function leaveChat() {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.user = null;
  state.closing = true;
  clearTimeout(state.reconnectTimer);
  if (state.socket) state.socket.close(1000);
  state.socket = null;
  state.ready = false;
  state.current = null;
  state.rooms.clear();
  state.pending.clear();
  $("messages").replaceChildren();
  $("chat-view").hidden = true;
  $("auth-view").hidden = false;
}

async function enterChat(user) {
  state.user = user;
  state.closing = false;
  state.attempt = 0;
  $("me").textContent = user.username;
  $("auth-view").hidden = true;
  $("chat-view").hidden = false;
  showRoom(null);
  await loadMyRooms();
  connect();
}

// ---------------------------------------------------------------------------------------------
// Rooms

async function loadMyRooms() {
  const rooms = await attempt(() => api("GET", "/chat/rooms"));
  if (!rooms) return;
  state.rooms = new Map(rooms.map((room) => [room.id, room]));
  if (!$("directory-search").value.trim()) showRooms(rooms, "Your rooms");
}

let searchSerial = 0;

async function search() {
  const q = $("directory-search").value.trim();
  const serial = ++searchSerial;
  if (!q) {
    showRooms([...state.rooms.values()], "Your rooms");
    return;
  }
  const rooms = await attempt(() => api("GET", `/chat/directory?q=${encodeURIComponent(q)}&limit=50`));
  if (rooms && serial === searchSerial) showRooms(rooms, `Rooms starting with “${q}”`);
}

function showRooms(rooms, title) {
  state.roomsShown = rooms;
  $("rooms-title").textContent = title;
  const items = rooms.map((room) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "room-item";
    button.dataset.testid = "room-item";
    button.dataset.roomName = room.name;
    button.dataset.roomId = room.id;
    if (state.current && state.current.room.id === room.id) button.setAttribute("aria-current", "true");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = room.name;
    const meta = document.createElement("span");
    meta.className = "meta";
    const members = `${room.memberCount} member${room.memberCount === 1 ? "" : "s"}`;
    meta.textContent = state.rooms.has(room.id) ? `joined · ${members}` : members;
    button.append(name, meta);
    button.addEventListener("click", () => openRoom(room));
    li.append(button);
    return li;
  });
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = $("directory-search").value.trim() ? "No room found." : "No rooms yet: create one or search.";
    items.push(li);
  }
  $("rooms").replaceChildren(...items);
}

async function createRoom(event) {
  event.preventDefault();
  const name = $("room-name").value.trim();
  if (!name) return;
  const room = await attempt(() => api("POST", "/chat/room", { name }));
  if (!room) return;
  clearError();
  $("room-name").value = "";
  state.rooms.set(room.id, room);
  await search();
  await openRoom(room);
}

async function joinRoom() {
  const current = state.current;
  if (!current) return;
  const room = await attempt(() => api("POST", `/chat/room/${current.room.id}/join`));
  if (!room) return;
  clearError();
  state.rooms.set(room.id, room);
  await search();
  await openRoom(room);
}

async function leaveRoom() {
  const current = state.current;
  if (!current) return;
  const left = await attempt(() => api("POST", `/chat/room/${current.room.id}/leave`).then(() => true));
  if (!left) return;
  unsubscribe(current.room.id);
  state.rooms.delete(current.room.id);
  showRoom(null);
  await search();
}

function showRoom(room) {
  $("room-empty").hidden = room !== null;
  $("room-open").hidden = room === null;
  $("members-panel").hidden = room === null;
  $("chat-view").classList.toggle("has-room", room !== null);
  if (room === null) {
    state.current = null;
    $("messages").replaceChildren();
    $("members").replaceChildren();
    state.members.clear();
    clearTyping();
  }
  for (const item of document.querySelectorAll(".room-item")) {
    if (room && item.dataset.roomId === room.id) item.setAttribute("aria-current", "true");
    else item.removeAttribute("aria-current");
  }
}

async function openRoom(room) {
  if (state.current) unsubscribe(state.current.room.id);
  const member = state.rooms.has(room.id);
  const current = { room, member, messages: new Map(), hasMore: false, loadingOlder: false, loaded: false, joined: false };
  state.current = current;
  showRoom(room);
  document.body.classList.remove("rooms-open");
  $("room-title").textContent = room.name;
  $("join-room").hidden = member;
  $("leave-room").hidden = !member;
  $("not-member").hidden = member;
  $("messages").hidden = !member;
  $("send-form").hidden = !member;
  $("messages").replaceChildren();
  $("members").replaceChildren();
  state.members.clear();
  clearTyping();
  if (!member) return;
  const page = await attempt(() => api("GET", `/chat/messages?roomId=${room.id}&limit=${PAGE_SIZE}`));
  if (!page || state.current !== current) return;
  current.hasMore = page.hasMore;
  for (const message of page.messages) upsertMessage(message);
  current.loaded = true;
  scrollToBottom();
  subscribe();
  $("message-input").focus();
}

// ---------------------------------------------------------------------------------------------
// Messages

function lastSeq(current) {
  let last = 0;
  for (const seq of current.messages.keys()) last = Math.max(last, seq);
  return last;
}

function firstSeq(current) {
  let first = Infinity;
  for (const seq of current.messages.keys()) first = Math.min(first, seq);
  return first;
}

function renderMessage(message, element) {
  const li = element || document.createElement("li");
  const own = state.user && message.author.id === state.user.id;
  li.className = own ? "message own" : "message";
  li.dataset.testid = "message";
  li.dataset.seq = String(message.seq);
  li.dataset.id = message.id;
  const head = document.createElement("div");
  head.className = "head";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = message.author.username;
  const time = document.createElement("time");
  time.dateTime = message.createdAt;
  time.textContent = new Date(message.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  head.append(author, time);
  if (message.editedAt) {
    const edited = document.createElement("span");
    edited.className = "edited";
    edited.textContent = "(edited)";
    head.append(edited);
  }
  if (own) {
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "link";
    edit.dataset.testid = "edit-message";
    edit.textContent = "Edit";
    edit.addEventListener("click", () => startEdit(message.id));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link danger";
    remove.dataset.testid = "delete-message";
    remove.textContent = "Delete";
    remove.addEventListener("click", () => deleteMessage(message.id));
    head.append(edit, remove);
  }
  const content = document.createElement("div");
  content.className = "content";
  content.dataset.testid = "message-content";
  content.textContent = message.content;
  li.replaceChildren(head, content);
  return li;
}

/** Puts a stored message in its place by seq; a message seen before is replaced, never doubled. */
function upsertMessage(message) {
  const current = state.current;
  if (!current || message.roomId !== current.room.id) return;
  const known = current.messages.get(message.seq);
  if (known) {
    known.message = message;
    renderMessage(message, known.element);
    return;
  }
  const element = renderMessage(message);
  current.messages.set(message.seq, { message, element });
  const list = $("messages");
  let after = null;
  for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
    if (!node.dataset.seq) continue;
    if (Number(node.dataset.seq) < message.seq) break;
    after = node;
  }
  list.insertBefore(element, after || firstPending());
  clearTypingOf(message.author.id);
}

function firstPending() {
  return $("messages").querySelector(".pending");
}

function removeMessage(roomId, messageId) {
  const current = state.current;
  if (!current || current.room.id !== roomId) return;
  for (const [seq, entry] of current.messages) {
    if (entry.message.id === messageId) {
      entry.element.remove();
      current.messages.delete(seq);
      return;
    }
  }
}

function nearBottom() {
  const list = $("messages");
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

function scrollToBottom() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

async function loadOlder() {
  const current = state.current;
  if (!current || !current.member || !current.hasMore || current.loadingOlder) return;
  const before = firstSeq(current);
  if (!Number.isFinite(before)) return;
  current.loadingOlder = true;
  const list = $("messages");
  const page = await attempt(() =>
    api("GET", `/chat/messages?roomId=${current.room.id}&before=${before}&limit=${PAGE_SIZE}`),
  );
  current.loadingOlder = false;
  if (!page || state.current !== current) return;
  const fromBottom = list.scrollHeight - list.scrollTop;
  current.hasMore = page.hasMore;
  for (const message of page.messages) upsertMessage(message);
  list.scrollTop = list.scrollHeight - fromBottom;
}

/** After a reconnect: the latest page over REST shows edits and deletions made meanwhile. */
async function refreshLatest(current) {
  const page = await attempt(() => api("GET", `/chat/messages?roomId=${current.room.id}&limit=${PAGE_SIZE}`));
  if (!page || state.current !== current || page.messages.length === 0) return;
  if (current.messages.size === 0) current.hasMore = page.hasMore;
  const stick = nearBottom();
  const present = new Set(page.messages.map((m) => m.seq));
  const from = page.messages[0].seq;
  const to = page.messages[page.messages.length - 1].seq;
  for (const [seq, entry] of [...current.messages]) {
    if (seq >= from && seq <= to && !present.has(seq)) removeMessage(current.room.id, entry.message.id);
  }
  for (const message of page.messages) upsertMessage(message);
  if (stick) scrollToBottom();
}

function send(event) {
  event?.preventDefault();
  const current = state.current;
  const input = $("message-input");
  const content = input.value.trim();
  if (!current || !current.member || !content) return;
  if (content.length > 1000) {
    showError("A message holds at most 1000 characters.");
    return;
  }
  input.value = "";
  const item = {
    kind: "send",
    roomId: current.room.id,
    content,
    clientMessageId: randomId(),
    element: pendingElement(content),
  };
  const ref = `s${state.nextRef++}`;
  state.pending.set(ref, item);
  $("messages").append(item.element);
  scrollToBottom();
  if (state.ready) transmit(ref, item);
}

function pendingElement(content) {
  const li = document.createElement("li");
  li.className = "message own pending";
  li.dataset.testid = "pending-message";
  const head = document.createElement("div");
  head.className = "head";
  head.textContent = "sending…";
  const body = document.createElement("div");
  body.className = "content";
  body.textContent = content;
  li.append(head, body);
  return li;
}

function transmit(ref, item) {
  if (item.kind === "send") {
    frame({ type: "send", roomId: item.roomId, content: item.content, clientMessageId: item.clientMessageId, ref });
  } else if (item.kind === "edit") {
    frame({ type: "edit", messageId: item.messageId, content: item.content, ref });
  } else if (item.kind === "delete") {
    frame({ type: "delete", messageId: item.messageId, ref });
  }
}

function startEdit(messageId) {
  const current = state.current;
  if (!current) return;
  const entry = [...current.messages.values()].find((e) => e.message.id === messageId);
  if (!entry) return;
  const box = entry.element.querySelector(".content");
  const input = document.createElement("input");
  input.className = "edit";
  input.dataset.testid = "edit-input";
  input.maxLength = 1000;
  input.value = entry.message.content;
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      const content = input.value.trim();
      if (content && content !== entry.message.content) {
        request({ kind: "edit", messageId, content });
      }
      renderMessage(entry.message, entry.element);
    } else if (event.key === "Escape") {
      renderMessage(entry.message, entry.element);
    }
  });
  box.replaceChildren(input);
  input.focus();
}

function deleteMessage(messageId) {
  request({ kind: "delete", messageId });
}

function request(item) {
  if (!state.ready) {
    showError("Not connected: try again in a moment.");
    return;
  }
  const ref = `${item.kind[0]}${state.nextRef++}`;
  state.pending.set(ref, item);
  transmit(ref, item);
}

function typed() {
  const current = state.current;
  if (!current || !current.member || !state.ready) return;
  const now = Date.now();
  if (now - state.lastTypingSent < TYPING_EVERY_MS) return;
  state.lastTypingSent = now;
  frame({ type: "typing", roomId: current.room.id });
}

function showTyping(user) {
  if (state.user && user.id === state.user.id) return;
  const known = state.typing.get(user.id);
  if (known) clearTimeout(known.timer);
  const timer = setTimeout(() => clearTypingOf(user.id), TYPING_SHOWN_MS);
  state.typing.set(user.id, { username: user.username, timer });
  renderTyping();
}

function clearTypingOf(userId) {
  const known = state.typing.get(userId);
  if (!known) return;
  clearTimeout(known.timer);
  state.typing.delete(userId);
  renderTyping();
}

function clearTyping() {
  for (const { timer } of state.typing.values()) clearTimeout(timer);
  state.typing.clear();
  renderTyping();
}

function renderTyping() {
  const names = [...state.typing.values()].map((t) => t.username);
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  $("typing").textContent = text;
}

// ---------------------------------------------------------------------------------------------
// Members

function renderMembers() {
  const members = [...state.members.values()].sort(
    (a, b) => Number(b.online) - Number(a.online) || a.username.localeCompare(b.username),
  );
  $("members").replaceChildren(
    ...members.map((member) => {
      const li = document.createElement("li");
      li.dataset.testid = "member";
      li.dataset.online = member.online ? "true" : "false";
      li.dataset.username = member.username;
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.title = member.online ? "online" : "offline";
      const name = document.createElement("span");
      name.textContent = member.username;
      li.append(dot, name);
      return li;
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// The live connection

function setConnection(label) {
  const badge = $("connection");
  badge.dataset.state = label;
  badge.textContent = label;
}

function frame(object) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(object));
    return true;
  }
  return false;
}

async function connect() {
  if (!state.token || state.socket || state.connecting) return;
  clearTimeout(state.reconnectTimer);
  setConnection(state.attempt === 0 ? "connecting" : "reconnecting");
  let ticket;
  state.connecting = true;
  try {
    ticket = await api("POST", "/ws/ticket");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) scheduleReconnect();
    return;
  } finally {
    state.connecting = false;
  }
  if (!state.token || state.socket) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws?ticket=${encodeURIComponent(ticket.ticket)}`);
  state.socket = socket;
  state.closing = false;
  socket.addEventListener("message", (event) => {
    if (state.socket !== socket) return;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    received(data);
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    state.ready = false;
    if (state.current) state.current.joined = false;
    // A logout of ours ends the session too (4001): that is no news to show.
    if (state.closing || !state.token) return;
    if (event.code === 4001) {
      sessionEnded();
      return;
    }
    setConnection("reconnecting");
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  clearTimeout(state.reconnectTimer);
  const base = BACKOFF_MS[Math.min(state.attempt, BACKOFF_MS.length - 1)];
  state.attempt += 1;
  const delay = base / 2 + Math.random() * (base / 2);
  state.reconnectTimer = setTimeout(connect, delay);
}

function subscribe() {
  const current = state.current;
  if (!current || !current.member || !current.loaded || !state.ready || current.joined) return;
  current.joined = true;
  const since = lastSeq(current);
  frame({ type: "join", roomId: current.room.id, sinceSeq: since, ref: `j${state.nextRef++}` });
  frame({ type: "members", roomId: current.room.id, ref: `m${state.nextRef++}` });
}

function unsubscribe(roomId) {
  if (state.current && state.current.room.id === roomId) state.current.joined = false;
  frame({ type: "leave", roomId, ref: `l${state.nextRef++}` });
}

function received(data) {
  const current = state.current;
  switch (data.type) {
    case "ready": {
      const resumed = state.attempt > 0;
      state.ready = true;
      state.attempt = 0;
      setConnection("online");
      subscribe();
      // Whatever was written while the connection was down goes out now, with the same
      // clientMessageId, so a send that did reach the server is not stored twice.
      // An edit or deletion cut off is not repeated: the refreshed page shows what became of it.
      for (const [ref, item] of [...state.pending]) {
        if (item.kind === "send") transmit(ref, item);
        else state.pending.delete(ref);
      }
      if (current && current.member && !current.loaded) openRoom(current.room);
      else if (resumed && current && current.member) refreshLatest(current);
      break;
    }
    case "joined":
      // Too much was missed to replay: start again from the latest page (older ones load on
      // scroll), so no gap is left in between.
      if (data.truncated && current && current.room.id === data.roomId) {
        for (const { element } of current.messages.values()) element.remove();
        current.messages.clear();
        refreshLatest(current);
      }
      break;
    case "message":
      if (current && data.message.roomId === current.room.id) {
        const stick = nearBottom();
        upsertMessage(data.message);
        if (stick) scrollToBottom();
      }
      break;
    case "ack":
      settle(data.ref);
      if (data.message) upsertMessage(data.message);
      break;
    case "messageEdited":
      settle(data.ref);
      upsertMessage(data.message);
      break;
    case "messageDeleted":
      settle(data.ref);
      removeMessage(data.roomId, data.messageId);
      break;
    case "typing":
      if (current && data.roomId === current.room.id) showTyping(data.user);
      break;
    case "members":
      if (current && data.roomId === current.room.id) {
        state.members = new Map(data.members.map((m) => [m.userId, m]));
        renderMembers();
        const room = state.rooms.get(data.roomId);
        if (room && room.memberCount !== data.members.length) {
          room.memberCount = data.members.length;
          if (!$("directory-search").value.trim()) showRooms([...state.rooms.values()], "Your rooms");
        }
      }
      break;
    case "presence":
      if (current && data.roomId === current.room.id) {
        const member = state.members.get(data.user.id);
        if (member) {
          member.online = data.online;
          renderMembers();
        }
      }
      break;
    case "userJoined":
      if (current && data.roomId === current.room.id) {
        frame({ type: "members", roomId: current.room.id, ref: `m${state.nextRef++}` });
      }
      break;
    case "userLeft":
      if (current && data.roomId === current.room.id) {
        state.members.delete(data.user.id);
        renderMembers();
      }
      break;
    case "left":
      if (!data.ref) {
        // Without a ref it is not the reply to a leave of ours: the user left the room elsewhere.
        state.rooms.delete(data.roomId);
        if (current && data.roomId === current.room.id) openRoom(current.room);
        search();
      } else if (current && data.roomId === current.room.id) {
        current.joined = false;
      }
      break;
    case "error":
      failed(data);
      break;
    default:
      break;
  }
}

/** The reply to a frame of ours arrived: it is no longer pending. */
function settle(ref) {
  if (!ref) return null;
  const item = state.pending.get(ref);
  if (!item) return null;
  state.pending.delete(ref);
  item.element?.remove();
  return item;
}

function failed(data) {
  const item = settle(data.ref);
  const retryAfter = data.retryAfterMs ? data.retryAfterMs / 1000 : undefined;
  if (item && item.kind === "send" && data.code !== "MESSAGE_DELETED" && !$("message-input").value) {
    // Nothing was stored: give the text back so it can be sent again.
    $("message-input").value = item.content;
  }
  showError(describe(data.code, data.message, retryAfter));
}

// ---------------------------------------------------------------------------------------------
// Start

function wire() {
  $("auth-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const { email, password } = credentials();
    signIn("/auth/login", { email, password });
  });
  $("register").addEventListener("click", () => signIn("/auth/register", credentials()));
  $("logout").addEventListener("click", logout);
  $("error-close").addEventListener("click", clearError);
  $("create-form").addEventListener("submit", createRoom);
  let searchTimer = null;
  $("directory-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 150);
  });
  $("join-room").addEventListener("click", joinRoom);
  $("leave-room").addEventListener("click", leaveRoom);
  $("send-form").addEventListener("submit", send);
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("message-input").addEventListener("input", typed);
  $("messages").addEventListener("scroll", () => {
    if ($("messages").scrollTop < 120) loadOlder();
  });
  $("toggle-rooms").addEventListener("click", () => document.body.classList.toggle("rooms-open"));
  $("toggle-members").addEventListener("click", () => document.body.classList.toggle("members-open"));
  window.addEventListener("online", () => {
    if (!state.socket && state.token) {
      state.attempt = Math.min(state.attempt, 1);
      clearTimeout(state.reconnectTimer);
      connect();
    }
  });
}

async function start() {
  wire();
  if (state.token) {
    try {
      const user = await api("GET", "/auth/me");
      await enterChat(user);
      return;
    } catch {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
    }
  }
  $("auth-view").hidden = false;
}

start();
