"""Drives every operation of a live Convo server through the client openapi-python-client
generated from openapi/openapi.json, and checks that each parsed answer holds the types the
client declares (a field declared `str` that arrives as null fails here, although the generated
parser would let it through).

Usage: python drive.py BASE_URL (with the generated package importable as convo_client).
"""

import datetime
import sys
import types
import typing
import uuid

import attrs
import convo_client.models as models
from convo_client import AuthenticatedClient, Client
from convo_client.api.auth import (
    create_ws_ticket,
    get_current_user,
    login,
    logout,
    logout_all,
    register,
)
from convo_client.api.health import get_health, get_readiness
from convo_client.api.messages import (
    delete_message,
    edit_message,
    list_messages,
    send_message,
)
from convo_client.api.rooms import (
    create_room,
    get_room,
    join_room,
    leave_room,
    list_my_rooms,
    list_room_members,
    search_rooms,
)
from convo_client.types import UNSET, Unset

CALLS = 0


def check(value, hint, at):
    """Raises TypeError unless `value` is of the declared type `hint`."""
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                check(value, option, at)
                return
            except TypeError:
                pass
        raise TypeError(f"{at}: {value!r} is not {hint}")
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"{at}: {value!r} is not a list")
        for index, item in enumerate(value):
            check(item, typing.get_args(hint)[0], f"{at}[{index}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{at}: {value!r} is not a dict")
        return
    if hint is None or hint is type(None):
        if value is not None:
            raise TypeError(f"{at}: {value!r} is not None")
        return
    if attrs.has(hint):
        if not isinstance(value, hint):
            raise TypeError(f"{at}: {value!r} is not a {hint.__name__}")
        module = sys.modules[hint.__module__]
        hints = typing.get_type_hints(hint, globalns=vars(module), localns=vars(models))
        for field in attrs.fields(hint):
            check(getattr(value, field.name), hints[field.name], f"{at}.{field.name}")
        return
    if isinstance(hint, type):
        wrong_bool = hint in (int, float) and isinstance(value, bool)
        if not isinstance(value, hint) or wrong_bool:
            raise TypeError(f"{at}: {value!r} is not a {hint.__name__}")
        return
    raise TypeError(f"{at}: cannot check against {hint!r}")


def expect(response, status, hint=None, code=None):
    """The parsed answer, after checking its status, its type and, for problems, its code."""
    global CALLS
    CALLS += 1
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.content!r}"
    parsed = response.parsed
    if code is not None:
        check(parsed, models.Problem, "problem")
        assert parsed.code.value == code, f"expected {code}, got {parsed.code}"
        assert parsed.status == status
        assert response.headers["content-type"] == "application/problem+json"
    elif hint is not None:
        check(parsed, hint, hint.__name__ if isinstance(hint, type) else str(hint))
    return parsed


def main(base_url):
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    suffix = uuid.uuid4().hex[:8]

    def sign_up(name):
        body = models.RegisterRequest(email=f"{name}{suffix}@example.com", username=f"{name}{suffix}", password="Passw0rdX")
        auth = expect(register.sync_detailed(client=anonymous, body=body), 201, models.AuthResponse)
        assert auth.token_type == models.TokenType.BEARER
        return auth, AuthenticatedClient(base_url=base_url, token=auth.access_token, raise_on_unexpected_status=True)

    ada, as_ada = sign_up("ada")
    bob, as_bob = sign_up("bob")

    # Health.
    expect(get_health.sync_detailed(client=anonymous), 200, models.Health)
    expect(get_readiness.sync_detailed(client=anonymous), 200, models.Readiness)

    # Accounts and sessions.
    taken = models.RegisterRequest(email=f"other{suffix}@example.com", username=ada.user.username, password="Passw0rdX")
    expect(register.sync_detailed(client=anonymous, body=taken), 409, code="USERNAME_TAKEN")
    invalid = models.RegisterRequest(email=f"x{suffix}@example.com", username="a!", password="Passw0rdX")
    expect(register.sync_detailed(client=anonymous, body=invalid), 400, code="VALIDATION_FAILED")
    login_body = models.LoginRequest(email=ada.user.email, password="Passw0rdX")
    second = expect(login.sync_detailed(client=anonymous, body=login_body), 200, models.AuthResponse)
    wrong = models.LoginRequest(email=ada.user.email, password="Wrong0ne")
    expect(login.sync_detailed(client=anonymous, body=wrong), 401, code="INVALID_CREDENTIALS")
    me = expect(get_current_user.sync_detailed(client=as_ada), 200, models.User)
    assert me.id == ada.user.id and isinstance(me.created_at, datetime.datetime)
    ticket = expect(create_ws_ticket.sync_detailed(client=as_ada), 200, models.WsTicket)
    assert ticket.expires_in == 30
    stranger = AuthenticatedClient(base_url=base_url, token="not-a-token", raise_on_unexpected_status=True)
    expect(get_current_user.sync_detailed(client=stranger), 401, code="UNAUTHORIZED")

    # Rooms.
    name = f"room {suffix}"
    room = expect(create_room.sync_detailed(client=as_ada, body=models.CreateRoomRequest(name=name)), 201, models.Room)
    assert room.last_seq == 0 and room.member_count == 1
    expect(create_room.sync_detailed(client=as_bob, body=models.CreateRoomRequest(name=name)), 409, code="ROOM_NAME_TAKEN")
    expect(create_room.sync_detailed(client=as_bob, body=models.CreateRoomRequest(name="no/slash")), 400, code="VALIDATION_FAILED")
    expect(get_room.sync_detailed(room.id, client=as_bob), 403, code="NOT_A_MEMBER")
    expect(get_room.sync_detailed(uuid.uuid4(), client=as_bob), 404, code="ROOM_NOT_FOUND")
    expect(join_room.sync_detailed(room.id, client=as_bob), 200, models.Room)
    expect(get_room.sync_detailed(room.id, client=as_bob), 200, models.Room)
    found = expect(search_rooms.sync_detailed(client=as_bob, q=f"ROOM {suffix}", limit=10), 200, list[models.Room])
    assert [r.id for r in found] == [room.id]
    expect(search_rooms.sync_detailed(client=as_bob, limit=0), 400, code="VALIDATION_FAILED")
    members = expect(list_room_members.sync_detailed(room.id, client=as_bob), 200, list[models.Member])
    assert {m.username for m in members} == {ada.user.username, bob.user.username}
    mine = expect(list_my_rooms.sync_detailed(client=as_bob), 200, list[models.RoomSummary])
    assert mine[0].last_message_at is None

    # Messages.
    by_id = models.MessageToRoomId(room_id=room.id, content="hello", client_message_id="k-1")
    first = expect(send_message.sync_detailed(client=as_bob, body=by_id), 201, models.Message)
    assert first.edited_at is None and first.client_message_id == "k-1" and first.seq == 1
    again = expect(send_message.sync_detailed(client=as_bob, body=by_id), 200, models.Message)
    assert again.id == first.id
    by_name = models.MessageToRoomName(chat_room_name=name, content="hi, by name")
    plain = expect(send_message.sync_detailed(client=as_ada, body=by_name), 201, models.Message)
    assert plain.client_message_id is None
    mine = expect(list_my_rooms.sync_detailed(client=as_bob), 200, list[models.RoomSummary])
    assert isinstance(mine[0].last_message_at, datetime.datetime)
    page = expect(list_messages.sync_detailed(client=as_bob, room_id=room.id, limit=10), 200, models.MessagePage)
    assert [m.seq for m in page.messages] == [1, 2] and page.has_more is False
    page = expect(list_messages.sync_detailed(client=as_bob, chat_room_name=name, after=1), 200, models.MessagePage)
    assert [m.seq for m in page.messages] == [2]
    expect(list_messages.sync_detailed(client=as_bob, room_id=room.id, before=0), 400, code="VALIDATION_FAILED")
    edited = expect(
        edit_message.sync_detailed(first.id, client=as_bob, body=models.EditMessageRequest(content="hello again")),
        200,
        models.Message,
    )
    assert isinstance(edited.edited_at, datetime.datetime)
    expect(
        edit_message.sync_detailed(first.id, client=as_ada, body=models.EditMessageRequest(content="mine now")),
        403,
        code="NOT_THE_AUTHOR",
    )
    expect(delete_message.sync_detailed(first.id, client=as_bob), 204)
    expect(delete_message.sync_detailed(first.id, client=as_bob), 404, code="MESSAGE_NOT_FOUND")
    expect(send_message.sync_detailed(client=as_bob, body=by_id), 410, code="MESSAGE_DELETED")
    expect(leave_room.sync_detailed(room.id, client=as_bob), 204)
    expect(send_message.sync_detailed(client=as_bob, body=by_id.__class__(room_id=room.id, content="x")), 403, code="NOT_A_MEMBER")

    # Ending sessions.
    as_second = AuthenticatedClient(base_url=base_url, token=second.access_token, raise_on_unexpected_status=True)
    expect(logout.sync_detailed(client=as_second), 204)
    expect(get_current_user.sync_detailed(client=as_second), 401, code="UNAUTHORIZED")
    expect(logout_all.sync_detailed(client=as_ada), 204)
    expect(get_current_user.sync_detailed(client=as_ada), 401, code="UNAUTHORIZED")

    # The checker itself refuses a string field that is null.
    try:
        check(models.User(id=me.id, email=None, username="x", created_at=me.created_at), models.User, "user")
    except TypeError:
        pass
    else:
        raise AssertionError("a null email passed the type check")
    assert UNSET is not None and Unset is not None
    print(f"python: {CALLS} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1])
