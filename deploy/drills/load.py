"""A steady, bounded load on the cluster, and the verdict on what it saw.

A Plan says how many users subscribe (each with its own client address and SSH key, several
sockets each), how many post and how fast, for how long. Load.prepare() makes the keys,
registers users and two rooms of this run on an app host, and logs everyone in through nginx;
Load.run() opens the sockets, posts for ``duration`` seconds while the drill breaks something,
revokes a few users' tokens and has a few subscribers leave a room halfway, waits for every
delivery to arrive (at most ``drain`` seconds), closes everything and judges. Every generator
stops by itself: posts are bounded in count and time, sockets close when the drill ends.
"""

import asyncio
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy import topology
from deploy.cluster import Cluster
from deploy.drills import checker
from deploy.drills.client import Api, HttpStats, Poster, Subscriber, now


@dataclass
class Plan:
    users: int = 8  # subscribing users, each from its own client address
    sockets_per_user: int = 2
    posters: int = 2
    rate: float = 10.0  # posts per second, all posters together
    duration: float = 20.0  # seconds of posting
    revoked: int = 1  # more subscribing users whose token is revoked halfway (logout)
    unsubscribing: int = 1  # subscribers that leave the second room at 40 %
    drain: float = 30.0  # seconds allowed after the last post for every delivery to arrive
    targeted_every: int = 5  # every Nth post is targeted at one member
    revoke_halfway: bool = True  # False: the revoked users are the drill's own (drill 4)

    def check(self) -> None:
        people = self.users + self.revoked + self.posters
        if people > len(topology.CLIENT_ADDRESSES):
            raise ValueError(f"at most {len(topology.CLIENT_ADDRESSES)} users (one client address each)")


class Load:
    def __init__(self, cluster: Cluster, plan: Plan, out_dir: Path):
        plan.check()
        self.cluster, self.plan, self.out_dir = cluster, plan, out_dir
        self.run_id = time.strftime("%H%M%S", time.gmtime()) + f"{int(time.time() * 1000) % 1000:03d}"
        self.rooms = [f"drill-{self.run_id}-a", f"drill-{self.run_id}-b"]
        self.stats = HttpStats()
        self.subscribers: list[Subscriber] = []
        self.posters: list[Poster] = []
        # username -> {"id", "role", "token", "token_id", "api", "rooms", "key"}; role is
        # "subscriber", "revoked" (a subscriber whose token the drill revokes) or "poster"
        self.users: dict[str, dict] = {}
        self.stop = asyncio.Event()
        self.events: list[tuple[float, str]] = []  # what the drill did, when (for the report)
        self.problems: list[str] = []  # contract breaches seen along the way (client IPs…)
        self.started_at = now()
        self.tasks: list[asyncio.Task] = []  # the subscribers' runs

    def event(self, what: str) -> None:
        self.events.append((now(), what))
        print(f"  [{now() - self.started_at:6.1f} s] {what}", flush=True)

    # --- preparation ------------------------------------------------------------------------------
    async def prepare(self) -> None:
        plan = self.plan
        roles = {f"d{self.run_id}-s{i}": "subscriber" for i in range(plan.users)}
        roles.update({f"d{self.run_id}-r{i}": "revoked" for i in range(plan.revoked)})
        roles.update({f"d{self.run_id}-p{i}": "poster" for i in range(plan.posters)})
        names = list(roles)
        keys_dir = self.out_dir / "keys"
        keys_dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=4) as pool:
            keys = dict(zip(names, pool.map(lambda name: make_key(keys_dir, name), names), strict=True))
        second_room = [n for i, n in enumerate(names) if roles[n] != "subscriber" or i % 2 == 0]
        request = {
            "action": "seed",
            "users": [
                {"username": n, "public_key": (keys[n].with_suffix(".pub")).read_text()} for n in names
            ],
            "rooms": [
                {"slug": self.rooms[0], "members": names},
                {"slug": self.rooms[1], "members": second_room},
            ],
        }
        ids = json.loads(await asyncio.to_thread(self.app_python, request))["users"]
        for index, name in enumerate(names):
            rooms = self.rooms if name in second_room else self.rooms[:1]
            api = Api(topology.CLIENT_ADDRESSES[index], self.stats)
            self.users[name] = {
                "id": ids[name],
                "role": roles[name],
                "api": api,
                "rooms": rooms,
                "key": keys[name],
            }
        self.event(f"{len(names)} users registered, logging in with their SSH keys")
        await asyncio.gather(*(self.login(name) for name in names))
        await asyncio.gather(*(self._check_client_ip(name) for name in names))
        self.event("everyone logged in through nginx")
        self._build_clients()

    def named(self, role: str) -> list[str]:
        return [name for name, user in self.users.items() if user["role"] == role]

    def app_python(self, request: dict) -> str:
        """A request to deploy/drills/seed.py on an app host; its JSON answer."""
        service = self.cluster.recipes.python(topology.APPS[0], "-m", "deploy.drills.seed", name="drill-seed")
        return self.cluster.output(service, json.dumps(request))

    async def login(self, name: str) -> None:
        """A real login with the user's key, through nginx (a new token each time)."""
        user = self.users[name]
        issued = await user["api"].login(user["key"], device=f"drill {self.run_id}")
        user["token"], user["token_id"] = issued["token"], issued["token_id"]

    async def _check_client_ip(self, name: str) -> None:
        """The app must see each client's own address (X-Forwarded-For from a trusted proxy)."""
        user = self.users[name]
        tokens = (await user["api"].call("GET", "tokens", token=user["token"])).json()["tokens"]
        seen = next(t["created_ip"] for t in tokens if t["current"])
        if seen != user["api"].address:
            self.problems.append(f"{name} logged in from {user['api'].address}, the app saw {seen}")

    def _build_clients(self) -> None:
        leaving = self.plan.unsubscribing
        for name, user in self.users.items():
            person = {"id": user["id"], "username": name}
            if user["role"] == "poster":
                self.posters.append(
                    Poster(
                        name, person, user["token"], self.rooms, user["api"], self._targets_for(user["id"])
                    )
                )
                continue
            if user["role"] == "revoked" and not self.plan.revoke_halfway:
                continue
            copies = 1 if user["role"] == "revoked" else self.plan.sockets_per_user
            for copy in range(copies):
                subscriber = Subscriber(f"{name}/{copy}", person, user["token"], user["rooms"], user["api"])
                if leaving and user["role"] == "subscriber" and len(user["rooms"]) > 1:
                    subscriber.leaves = self.rooms[1]
                    leaving -= 1
                self.subscribers.append(subscriber)

    def _targets_for(self, poster_id: int):
        members = {
            room: [u["id"] for u in self.users.values() if room in u["rooms"] and u["id"] != poster_id]
            for room in self.rooms
        }

        def targets(n: int, room: str) -> list[int]:
            if self.plan.targeted_every and n % self.plan.targeted_every == 0:
                return [members[room][(n // self.plan.targeted_every) % len(members[room])]]
            return []

        return targets

    # --- the run ------------------------------------------------------------------------------------
    async def open_sockets(self, timeout: float = 60) -> None:
        self.tasks = [asyncio.ensure_future(s.run(self.stop)) for s in self.subscribers]
        deadline = now() + timeout
        while not all(self._subscribed(s) for s in self.subscribers):
            if now() > deadline:
                missing = [s.name for s in self.subscribers if not self._subscribed(s)]
                raise RuntimeError(f"sockets not subscribed after {timeout} s: {missing[:5]}")
            await asyncio.sleep(0.1)
        self.event(f"{len(self.subscribers)} sockets subscribed through nginx")

    async def resubscribed(self, since: float, timeout: float = 90) -> None:
        """Every subscriber is back on a socket opened after ``since`` (a restart) and subscribed."""
        deadline = now() + timeout
        while not all(
            s.current and s.current.opened_at > since and self._subscribed(s) for s in self.subscribers
        ):
            if now() > deadline:
                raise RuntimeError(f"sockets not back {timeout} s after the restart")
            await asyncio.sleep(0.1)
        self.event(f"{len(self.subscribers)} sockets resubscribed")

    @staticmethod
    def _subscribed(subscriber: Subscriber) -> bool:
        log = subscriber.current
        got = {
            frame.get("room") for _, frame in (log.frames if log else []) if frame.get("type") == "subscribed"
        }
        return set(subscriber.rooms) <= got

    async def run(self, fault=None) -> dict:
        """Post for the plan's duration while ``fault(self)`` runs; then drain, judge, report."""
        plan = self.plan
        until = now() + plan.duration
        per_poster = plan.rate / max(1, len(self.posters))
        count = int(per_poster * plan.duration) + 1
        self.event(
            f"posting: {plan.rate:g}/s for {plan.duration:g} s ({count * len(self.posters)} posts at most)"
        )
        posting = [asyncio.ensure_future(p.run(count, per_poster, until)) for p in self.posters]
        side = [asyncio.ensure_future(self._halfway())]
        fault_task = asyncio.ensure_future(fault(self)) if fault else None
        await asyncio.gather(*posting, *side)
        self.event(f"posting done: {sum(p.id is not None for po in self.posters for p in po.posts)} acked")
        fault_result = await fault_task if fault_task else None
        await self._drain()
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 30)
        truth = await self._truth()
        verdict = checker.judge(self.subscribers, self.posters, truth)
        self._save_frames()
        for user in self.users.values():
            await user["api"].close()
        return {"verdict": verdict, "fault": fault_result}

    async def _halfway(self) -> None:
        plan = self.plan
        await asyncio.sleep(plan.duration * 0.4)
        for subscriber in self.subscribers:
            if subscriber.leaves:
                await subscriber.unsubscribe(subscriber.leaves)
                self.event(f"{subscriber.name} unsubscribed from {subscriber.leaves}")
        await asyncio.sleep(plan.duration * 0.1)
        for subscriber in self.subscribers:
            if self.users[subscriber.user["username"]]["role"] == "revoked":
                api = self.users[subscriber.user["username"]]["api"]
                subscriber.revoking = True
                await api.call("DELETE", "logout", token=subscriber.token)
                subscriber.revoked_at = now()
                self.event(f"{subscriber.name}: token revoked (logout)")

    def owed(self, subscriber: Subscriber, room: str) -> int:
        """The highest acked id of ``room`` that ``subscriber`` may see."""
        user_id = subscriber.user["id"]
        best = 0
        for poster in self.posters:
            for post in poster.posts:
                if post.room != room or post.id is None:
                    continue
                if not post.targets or user_id in post.targets or poster.user["id"] == user_id:
                    best = max(best, post.id)
        return best

    async def _drain(self) -> None:
        deadline = now() + self.plan.drain
        waiting = []
        while now() < deadline:
            waiting = [
                (s, room)
                for s in self.subscribers
                if s.ended is None and s.revoked_at is None
                for room in s.rooms
                if room not in s.unsubscribed and s.last_id[room] < self.owed(s, room)
            ]
            if not waiting:
                self.event("every subscriber has every message")
                return
            await asyncio.sleep(0.1)
        self.event(f"drain timed out: {len(waiting)} subscriptions still behind")

    async def _truth(self) -> dict:
        truth = {}

        async def fetch(name: str, user: dict) -> None:
            for room in user["rooms"]:
                truth[(user["id"], room)] = await user["api"].history(user["token"], room)

        live = [(n, u) for n, u in self.users.items() if u["role"] != "revoked"]
        await asyncio.gather(*(fetch(n, u) for n, u in live))
        return truth

    async def locate_sockets(self) -> dict[str, int]:
        """Which app host holds each open socket (the live-connection registry); counts by host."""
        answer = json.loads(await asyncio.to_thread(self.app_python, {"action": "sockets"}))
        found = {connection_id: (process.split(":")[0], ip) for connection_id, process, ip in answer}
        counts: dict[str, int] = {}
        for subscriber in self.subscribers:
            log = subscriber.current
            if log and log.closed_at is None and log.connection_id in found:
                log.host, client_ip = found[log.connection_id]
                counts[log.host] = counts.get(log.host, 0) + 1
                if client_ip != subscriber.api.address:
                    self.problems.append(
                        f"{subscriber.name}'s socket from {subscriber.api.address}: the app saw {client_ip}"
                    )
        return counts

    def _save_frames(self) -> None:
        with open(self.out_dir / "frames.jsonl", "w") as out:
            for client in [*self.subscribers, *self.posters]:
                for log in client.sockets:
                    out.write(json.dumps(log.to_json()) + "\n")
        with open(self.out_dir / "plan.json", "w") as out:
            json.dump({"plan": asdict(self.plan), "rooms": self.rooms, "events": self.events}, out, indent=1)


def make_key(directory: Path, name: str) -> Path:
    """A real ed25519 key made by ssh-keygen, as a user would have one."""
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@drill", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path
