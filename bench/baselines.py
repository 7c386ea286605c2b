"""Baseline endpoints the benchmarks compare our code with, served by the same server and
channel layer. Mounted only when NATIVE_BENCH_BASELINES=true (config/urls.py,
native_api/routing.py); never in production.

- ``GET /bench/plain``: a trivial unauthenticated JSON view (through the site's middleware).
- ``GET /bench/slow?seconds=S``: a sync view that sleeps (at most 30 s), for requests that are
  still in flight when a server is told to stop (tests/test_shutdown.py).
- ``bench.minimal_wsgi``: the smallest possible Django JSON view, in a project of its own (no
  apps, no middleware, no database): the WSGI baseline of ``bench auth``.
- ``/bench/ws/bare``: a bare Channels group-broadcast consumer, no auth, no persistence:
  every client joins one group, says hello like ours does, and a ``send`` frame is
  group_send to everyone with a message of the same shape as ours.
"""

import itertools
import json
import time

from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

GROUP = "bench.bare"
_ids = itertools.count(1)


@csrf_exempt
def plain(request):
    return JsonResponse({"ok": True})


class BareBroadcastConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.send(text_data=json.dumps({"type": "hello", "connection_id": self.channel_name}))

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        frame = json.loads(text_data or "{}")
        if frame.get("type") != "send":
            return
        message = {
            "id": next(_ids),
            "room": "bare",
            "sender": {"id": 0, "username": "bare"},
            "body": frame.get("body"),
            "created_at": timezone.now().isoformat().replace("+00:00", "Z"),
            "client_id": frame.get("client_id"),
            "target_user_ids": [],
        }
        await self.channel_layer.group_send(GROUP, {"type": "bare.message", "message": message})

    async def bare_message(self, event):
        await self.send(text_data=json.dumps({"type": "message", "message": event["message"]}))


@csrf_exempt
def slow(request):
    seconds = min(30.0, float(request.GET.get("seconds", "1")))
    time.sleep(seconds)
    return JsonResponse({"slept": seconds})


def urlpatterns():
    return [path("bench/plain", plain), path("bench/slow", slow)]


def websocket_routes():
    return [path("bench/ws/bare", BareBroadcastConsumer.as_asgi())]
