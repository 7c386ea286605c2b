"""Baseline endpoints the benchmarks compare our code with, served by the same server and
channel layer. Mounted only when NATIVE_BENCH_BASELINES=true (config/urls.py,
native_api/routing.py); never in production.

- ``GET /bench/plain``: a trivial unauthenticated JSON view.
- ``/bench/ws/bare``: a bare Channels group-broadcast consumer, no auth, no persistence:
  every client joins one group, says hello like ours does, and a ``send`` frame is
  group_send to everyone with a message of the same shape as ours.
"""

import itertools
import json

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


def urlpatterns():
    return [path("bench/plain", plain)]


def websocket_routes():
    return [path("bench/ws/bare", BareBroadcastConsumer.as_asgi())]
