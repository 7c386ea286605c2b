"""The interleaving checker: randomized, seeded sequences of client and operator actions against
real server processes, every frame of every socket recorded, then API.md's invariants checked.

Actors: four users, each with two devices (a device holds a token and at most one socket, and
remembers the last message id it saw per room, as a resuming client does), two rooms. Several
workers draw actions from one seeded generator and run them concurrently with random pauses:
connect, subscribe (fresh or resuming with ``after``), unsubscribe, post (websocket ``send`` or
REST, targeted or not), reconnect and resume, and the operator's removals and re-adds of
members, token revocations, deactivations and reactivations (made through the domain, in this
process, so they are recorded in the change log as admin and commands record them).

Invariants checked afterwards (``check``), with the database as the truth:
1. nothing of a room reaches a socket after ``unsubscribed`` (whatever its reason) until the
   socket subscribes again, and nothing of a room it never subscribed to;
2. nothing targeted at others: a targeted message reaches only its sender and its targets;
3. no gap and no duplicate: each subscription receives exactly the messages visible to its user
   in its range: after ``after`` (or after the ``last_message_id`` of ``subscribed``) and up to
   the last one it received, or, if it is still live once everything has settled, up to the
   room's last message;
4. rights taken away are enforced within the bound: a socket whose token was revoked or whose
   user was deactivated is closed (4401, 4403, or 1013 when its process failed closed) within
   BOUND of the commit and receives nothing after; a subscription whose user was removed from
   the room (and not re-added within the bound) ends with ``unsubscribed`` within BOUND; and no
   live message committed more than BOUND after a removal that still held reaches that user.
Times are this process's clock; a frame's time is when the client read it, so the timed checks
allow CLIENT_SLACK for the client's own delay in reading (it runs beside the servers).

A run is replayable: the seed fixes the sequence of actions and pauses (scheduling between the
processes still varies). tests/test_interleaving.py runs a short budget in CI; a long run:
``INTERLEAVING_OPS=5000 INTERLEAVING_SEED=7 pytest tests/test_interleaving.py``.
"""

import asyncio
import contextlib
import itertools
import json
import random
import time
from dataclasses import dataclass, field

import httpx
import websockets
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction

from rooms.membership import add_member, remove_member
from rooms.models import Membership, Message, Room
from tokens.login import issue_token
from tokens.models import NativeToken
from tokens.revocation import revoke_native_tokens

BOUND = 2.0
INF = float("inf")
CLIENT_SLACK = 0.5
USERS = ("ia", "ib", "ic", "id")
ROOMS = ("ir0", "ir1")
START_MEMBERS = {"ir0": ("ia", "ib", "ic"), "ir1": ("ia", "ib", "id")}
DEVICES_PER_USER = 2
WORKERS = 3
HISTORY = 450  # messages per room before the run


@dataclass
class Event:
    t: float
    kind: str  # "recv" (a frame), "sent" (a frame), "closed"
    data: dict


@dataclass
class Sub:
    """One subscription instance as the client lived it."""

    room: str
    after: int | None
    opened: float
    start: int | None = None  # ids > start are expected (after, or subscribed's last_message_id)
    ids: list = field(default_factory=list)
    ref: str = ""
    state: str = "subscribing"  # subscribing, live, unsubscribing, ended
    ended_at: float | None = None
    end_reason: str | None = None


class Device:
    def __init__(self, name: str, user, raw: str, token_pk: int):
        self.name, self.user, self.raw, self.token_pk = name, user, raw, token_pk
        self.socket = None
        self.reader: asyncio.Task | None = None
        self.events: list[Event] = []  # of the current socket; archived per socket in sockets
        self.sockets: list[dict] = []  # {"events", "token_pk", "server", "opened", "closed"}
        self.subs: dict[str, Sub] = {}  # the current socket's subscriptions by room
        self.last_seen: dict[str, int] = {}  # across sockets: what a resuming client remembers
        self.busy = asyncio.Lock()


class Run:
    def __init__(self, seed: int, ops: int, servers: list):
        self.seed, self.ops, self.servers = seed, ops, servers
        self.rng = random.Random(seed)
        self.log: list[tuple] = []  # (kind, subject, t_before, t_after)
        self.devices: list[Device] = []
        self.users: dict[str, object] = {}
        self.rooms: dict[str, Room] = {}
        self.refs = itertools.count(1)
        self.http = httpx.AsyncClient(timeout=10)
        self.subject_locks: dict = {}

    # --- set-up -------------------------------------------------------------------------------

    @database_sync_to_async
    def _seed_database(self):
        model = get_user_model()
        for name in USERS:
            self.users[name] = model.objects.create_user(username=name)
        for slug in ROOMS:
            room = self.rooms[slug] = Room.objects.create(slug=slug, name=slug)
            for name in START_MEMBERS[slug]:
                add_member(room, self.users[name])
            # A history, so that a resume from 0 sends a backlog of several chunks.
            sender = self.users[START_MEMBERS[slug][0]]
            Message.objects.bulk_create(
                [Message(room=room, seq=n + 1, sender=sender, body=f"history {n}") for n in range(HISTORY)]
            )
            Room.objects.filter(pk=room.pk).update(last_seq=HISTORY)
        for name in USERS:
            for n in range(DEVICES_PER_USER):
                issued = issue_token(self.users[name], device_name=f"{name}-{n}")
                self.devices.append(Device(f"{name}-{n}", self.users[name], issued.raw, issued.token.pk))

    # --- the client side ------------------------------------------------------------------------

    async def _read(self, device: Device, socket, events: list, record: dict) -> None:
        try:
            async for text in socket:
                frame = json.loads(text)
                events.append(Event(time.time(), "recv", frame))
                if socket is device.socket:
                    self._client_state(device, frame)
        except websockets.ConnectionClosed:
            pass
        closed = socket.protocol.close_rcvd  # the server's close frame, if one arrived
        record["closed"] = (time.time(), closed.code if closed else 1006, closed.reason if closed else "")
        events.append(Event(time.time(), "closed", {"code": record["closed"][1]}))
        for sub in device.subs.values() if socket is device.socket else ():
            if sub.state != "ended":
                sub.state, sub.ended_at, sub.end_reason = "ended", time.time(), "closed"

    def _client_state(self, device: Device, frame: dict) -> None:
        room = frame.get("room") or (frame.get("message") or {}).get("room")
        sub = device.subs.get(room)
        kind = frame["type"]
        if kind == "message" and sub is not None and sub.state != "ended":
            sub.ids.append(frame["message"]["id"])
            device.last_seen[room] = max(device.last_seen.get(room, 0), frame["message"]["id"])
        elif kind == "subscribed" and sub is not None:
            sub.state = "live"
            if sub.after is None:
                sub.start = frame["last_message_id"] or 0
        elif kind == "unsubscribed" and sub is not None and sub.state != "ended":
            sub.state, sub.ended_at, sub.end_reason = "ended", time.time(), frame["reason"]
        elif (
            kind == "error" and sub is not None and sub.state == "subscribing" and frame.get("ref") == sub.ref
        ):
            sub.state, sub.ended_at, sub.end_reason = "ended", time.time(), "refused"

    async def _send(self, device: Device, frame: dict) -> None:
        device.events.append(Event(time.time(), "sent", frame))
        with contextlib.suppress(websockets.ConnectionClosed):
            await device.socket.send(json.dumps(frame))

    def _open(self, device: Device) -> bool:
        return device.socket is not None and device.sockets[-1].get("closed") is None

    async def connect(self, device: Device) -> None:
        if self._open(device):
            return
        server = self.rng.choice(self.servers)
        events: list[Event] = []
        record = {"events": events, "token_pk": device.token_pk, "server": server.url, "opened": time.time()}
        record["subs"] = device.subs = {}
        device.events = events
        device.sockets.append(record)
        try:
            device.socket = await websockets.connect(
                server.ws_url, additional_headers={"Authorization": f"Bearer {device.raw}"}, open_timeout=10
            )
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            record["closed"] = (time.time(), -1, type(exc).__name__)
            device.socket = None
            return
        device.reader = asyncio.create_task(self._read(device, device.socket, events, record))

    async def subscribe(self, device: Device, room: str, resume: bool) -> None:
        if not self._open(device) or (room in device.subs and device.subs[room].state != "ended"):
            return
        after = device.last_seen.get(room, 0) if resume else None
        sub = Sub(room, after, time.time(), start=after, ref=f"s{next(self.refs)}")
        device.subs[room] = sub
        device.sockets[-1].setdefault("all_subs", []).append(sub)
        frame = {"type": "subscribe", "room": room, "ref": sub.ref}
        if after is not None:
            frame["after"] = after
        await self._send(device, frame)

    async def unsubscribe(self, device: Device, room: str) -> None:
        sub = device.subs.get(room)
        if not self._open(device) or sub is None or sub.state != "live":
            return
        sub.state = "unsubscribing"
        await self._send(device, {"type": "unsubscribe", "room": room})

    async def post_ws(self, device: Device, room: str, targeted: bool) -> None:
        if not self._open(device):
            return
        frame = {
            "type": "send",
            "room": room,
            "body": f"ws {next(self.refs)}",
            "client_id": f"c{next(self.refs)}",
        }
        if targeted:
            frame["target_user_ids"] = [self.users[self.rng.choice(USERS)].pk]
        await self._send(device, frame)

    async def post_rest(self, device: Device, room: str, targeted: bool) -> None:
        body = {"body": f"rest {next(self.refs)}"}
        if targeted:
            body["target_user_ids"] = [self.users[self.rng.choice(USERS)].pk]
        server = self.rng.choice(self.servers)
        with contextlib.suppress(httpx.HTTPError):
            await self.http.post(
                f"{server.url}/api/native/rooms/{room}/messages",
                json=body,
                headers={"Authorization": f"Bearer {device.raw}"},
            )

    async def reconnect(self, device: Device) -> None:
        rooms = [room for room, sub in device.subs.items() if sub.state in ("live", "subscribing")]
        if self._open(device):
            device.sockets[-1]["client_closed"] = time.time()
            await device.socket.close()
            await device.reader
        await self.connect(device)
        for room in rooms:
            await self.subscribe(device, room, resume=True)

    # --- the operator side --------------------------------------------------------------------

    async def operate(self, kind: str, subject: tuple, action) -> None:
        """Run an operator action; log it (with times around its commit) when it changed something.
        Actions on one subject (a user, a membership) never overlap, so their order is known."""
        lock = self.subject_locks.setdefault(
            subject[0] if kind.endswith("activated") else subject, asyncio.Lock()
        )
        async with lock:
            before = time.time()
            changed = await database_sync_to_async(action)()
            if changed:
                self.log.append((kind, subject, before, time.time()))

    async def remove(self, user: str, room: str) -> None:
        await self.operate("removed", (user, room), lambda: remove_member(self.rooms[room], self.users[user]))

    async def readd(self, user: str, room: str) -> None:
        await self.operate("added", (user, room), lambda: add_member(self.rooms[room], self.users[user]))

    async def revoke(self, device: Device) -> None:
        pk = device.token_pk
        await self.operate("revoked", (pk,), lambda: revoke_native_tokens(NativeToken.objects.filter(pk=pk)))
        # The device logs in again for its next socket (the old token stays dead).
        issued = await database_sync_to_async(issue_token)(device.user, device_name=device.name)
        device.raw, device.token_pk = issued.raw, issued.token.pk

    async def set_active(self, user: str, active: bool) -> None:
        model = get_user_model()

        def save() -> bool:
            with transaction.atomic():
                person = model.objects.select_for_update().get(username=user)
                if person.is_active == active:
                    return False
                person.is_active = active
                person.save()
                return True

        await self.operate("activated" if active else "deactivated", (user,), save)

    # --- the schedule -------------------------------------------------------------------------

    def _next_action(self):
        rng = self.rng
        device = rng.choice(self.devices)
        room = rng.choice(ROOMS)
        user = rng.choice(USERS)
        choices = [
            (14, lambda: self.connect(device)),
            (14, lambda: self.subscribe(device, room, resume=rng.random() < 0.7)),
            (5, lambda: self.unsubscribe(device, room)),
            (18, lambda: self.post_ws(device, room, targeted=rng.random() < 0.3)),
            (8, lambda: self.post_rest(device, room, targeted=rng.random() < 0.3)),
            (5, lambda: self.reconnect(device)),
            (4, lambda: self.remove(user, room)),
            (5, lambda: self.readd(user, room)),
            (2, lambda: self.revoke(device)),
            (1, lambda: self.set_active(user, False)),
            (2, lambda: self.set_active(user, True)),
        ]
        total = sum(weight for weight, _ in choices)
        pick = rng.uniform(0, total)
        for weight, make in choices:
            pick -= weight
            if pick <= 0:
                return device, make, rng.uniform(0, 0.06)
        return device, choices[0][1], 0.0

    async def _worker(self, plan: asyncio.Queue) -> None:
        while True:
            item = await plan.get()
            if item is None:
                return
            device, make, pause = item
            await asyncio.sleep(pause)
            async with device.busy:
                await make()

    async def run(self) -> None:
        await self._seed_database()
        plan: asyncio.Queue = asyncio.Queue()
        for _ in range(self.ops):
            await plan.put(self._next_action())
        for _ in range(WORKERS):
            await plan.put(None)
        await asyncio.gather(*(self._worker(plan) for _ in range(WORKERS)))
        await asyncio.sleep(BOUND + 1.0)  # everything in flight arrives; every change is applied
        for device in self.devices:
            if self._open(device):
                device.sockets[-1]["settled"] = True  # still open at the end: checked to the end
                await device.socket.close()
            if device.reader is not None:
                await device.reader
        await self.http.aclose()

    # --- the checker --------------------------------------------------------------------------

    @database_sync_to_async
    def _truth(self):
        messages = {}
        for message in Message.objects.select_related("room").prefetch_related("targets"):
            targets = {t.pk for t in message.targets.all()}
            messages[message.pk] = (
                message.room.slug,
                message.sender_id,
                targets,
                message.created_at.timestamp(),
            )
        tokens = dict(NativeToken.objects.values_list("pk", "user_id"))
        members = set(Membership.objects.values_list("user__username", "room__slug"))
        return messages, tokens, members

    async def check(self) -> list[str]:
        messages, tokens, _ = await self._truth()
        problems: list[str] = []
        by_room: dict[str, list[int]] = {}
        for mid, (room, *_rest) in sorted(messages.items()):
            by_room.setdefault(room, []).append(mid)
        for device in self.devices:
            for number, record in enumerate(device.sockets):
                where = f"{device.name} socket {number} ({record['server']})"
                problems += self._check_stream(device, record, messages, where)
                problems += self._check_subscriptions(device, record, messages, by_room, where)
                problems += self._check_credentials(device, record, where)
        return problems

    def _visible(self, user_id: int, mid: int, messages) -> bool:
        _, sender, targets, _ = messages[mid]
        return not targets or user_id == sender or user_id in targets

    def _check_stream(self, device, record, messages, where) -> list[str]:
        """Invariants 1 and 2, from the order of what the socket sent and received."""
        problems, state, refs = [], {}, {}
        uid = device.user.pk
        for event in record["events"]:
            frame = event.data
            if event.kind == "sent" and frame["type"] == "subscribe":
                state[frame["room"]], refs[frame["ref"]] = "subscribed", frame["room"]
            elif event.kind != "recv":
                continue
            elif frame["type"] == "unsubscribed":
                state[frame["room"]] = "ended by unsubscribed"
            elif frame["type"] == "error" and frame.get("ref") in refs:
                state[refs[frame["ref"]]] = "refused"
            elif frame["type"] == "message":
                message = frame["message"]
                room = message["room"]
                if state.get(room) != "subscribed":
                    status = state.get(room, "never subscribed")
                    problems.append(f"{where}: message {message['id']} of {room} while {status}")
                if message["id"] in messages and not self._visible(uid, message["id"], messages):
                    problems.append(
                        f"{where}: message {message['id']} targeted at others reached {device.name}"
                    )
        return problems

    def _check_subscriptions(self, device, record, messages, by_room, where) -> list[str]:
        """Invariant 3 (gap, duplicate) and the membership half of invariant 4."""
        problems = []
        uid = device.user.pk
        for sub in record.get("all_subs", []):
            if sub.end_reason == "refused":
                continue
            if sub.start is None:  # never live: nothing may have arrived
                if sub.ids:
                    problems.append(f"{where}: {sub.room} delivered {sub.ids[:5]} before subscribed")
                continue
            ids = sub.ids
            if ids != sorted(set(ids)):
                problems.append(f"{where}: {sub.room} delivered out of order or twice: {ids[:20]}")
                continue
            settled_live = sub.state in ("live", "subscribing") and record.get("settled")
            end = by_room.get(sub.room, [0])[-1] if settled_live else (ids[-1] if ids else sub.start)
            expected = [
                m
                for m in by_room.get(sub.room, [])
                if sub.start < m <= end and self._visible(uid, m, messages)
            ]
            if ids != expected:
                missing = sorted(set(expected) - set(ids))[:10]
                extra = sorted(set(ids) - set(expected))[:10]
                problems.append(
                    f"{where}: {sub.room} after {sub.start}: missing {missing}, unexpected {extra}"
                )
            problems += self._check_removals(device, sub, messages, where)
        return problems

    def _check_removals(self, device, sub: Sub, messages, where) -> list[str]:
        problems = []
        name = device.user.username
        for kind, subject, _, at in self.log:
            if kind != "removed" or subject != (name, sub.room) or not sub.opened < at:
                continue
            if sub.ended_at is not None and sub.ended_at < at:
                continue
            readded = min(
                (b for k, s, b, _ in self.log if k == "added" and s == subject and b >= at), default=INF
            )
            if readded <= at + BOUND:
                continue  # given back before the bound: the server may rightly keep it
            if sub.ended_at is None or sub.ended_at > at + BOUND + CLIENT_SLACK:
                problems.append(
                    f"{where}: {sub.room} not ended {sub.ended_at and sub.ended_at - at:.2f} s after removal"
                )
            late = [m for m in sub.ids if at + BOUND < messages[m][3] < readded]
            if late:
                problems.append(f"{where}: {sub.room} got {late[:5]} committed after removal + bound")
        return problems

    def _check_credentials(self, device, record, where) -> list[str]:
        """The credential half of invariant 4: revoked tokens and deactivated users. A socket open
        when its right ended closes within the bound and receives nothing after; one opened while
        the right was gone is refused."""
        problems = []
        opened, closed = record["opened"], record.get("closed")
        name = device.user.username
        gone = [
            (at, INF)
            for kind, subject, _, at in self.log
            if kind == "revoked" and subject == (record["token_pk"],)
        ]
        for kind, subject, _, at in self.log:
            if kind == "deactivated" and subject == (name,):
                back = min(
                    (b for k, s, b, _ in self.log if k == "activated" and s == subject and b >= at),
                    default=INF,
                )
                gone.append((at, back))
        if record.get("client_closed") is not None:  # the client itself closed it then
            closed = (record["client_closed"], 4401, "closed by the client")
        for at, back in gone:
            if opened < at and (closed is None or closed[0] > at):
                if back <= at + BOUND:
                    continue  # given back within the bound: the server may rightly keep it open
                if closed is None or closed[0] > at + BOUND + CLIENT_SLACK:
                    problems.append(
                        f"{where}: still open {closed and closed[0] - at:.2f} s after its right ended"
                    )
                elif closed[1] not in (4401, 4403, 1013):
                    problems.append(f"{where}: closed {closed[1]} after its right ended")
                late = [e for e in record["events"] if e.kind == "recv" and e.t > at + BOUND + CLIENT_SLACK]
                if late:
                    problems.append(
                        f"{where}: {len(late)} frame(s) later than the bound after its right ended"
                    )
            elif at + CLIENT_SLACK < opened < back:
                # Verified after the right ended: refused, unless it was given back before the
                # verification (which happened between the connect and the hello).
                hello = next(
                    (e.t for e in record["events"] if e.kind == "recv" and e.data["type"] == "hello"), None
                )
                if hello is not None and hello < back:
                    problems.append(f"{where}: accepted (hello) while its right was gone")
                elif hello is None and (closed is None or closed[1] not in (4401, 4403, 1013, -1)):
                    problems.append(f"{where}: opened while its right was gone, and not refused ({closed})")
        return problems
