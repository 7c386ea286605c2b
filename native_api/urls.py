from django.urls import path

from native_api.views import documents, health, rooms, session

urlpatterns = [
    path("health", health.health, name="health"),
    path("openapi.json", documents.openapi_json, name="openapi"),
    path("asyncapi.json", documents.asyncapi_json, name="asyncapi"),
    path("challenge", session.challenge, name="challenge"),
    path("token", session.token, name="token"),
    path("me", session.me, name="me"),
    path("ws-ticket", session.ws_ticket, name="ws-ticket"),
    path("logout", session.logout, name="logout"),
    path("tokens", session.tokens, name="tokens"),
    path("tokens/<str:token_id>", session.token_detail, name="token-detail"),
    path("rooms", rooms.rooms, name="rooms"),
    path("rooms/<str:slug>/history", rooms.history, name="history"),
    path("rooms/<str:slug>/members", rooms.members, name="members"),
    path("rooms/<str:slug>/messages", rooms.messages, name="messages"),
]
