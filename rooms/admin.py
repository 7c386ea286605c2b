"""Admin for rooms, memberships and messages.

Removing a membership here (the inline on a room, the membership's delete page, or the bulk
"delete selected" action) deletes Membership rows through the ORM collector, which sends
post_delete for each row, so rooms.signals unsubscribes the user's live sockets exactly as
``manage.py remove_member`` does. A membership is never edited in place: changing its user or
room would move access without telling anyone's sockets, so it is removed and added instead.
"""

from django.contrib import admin
from django.db.models import Count

from rooms.models import Membership, Message, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["user", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user"]
    extra = 0

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "member_count", "created_at"]
    search_fields = ["slug", "name"]
    fields = ["slug", "name", "created_at", "last_seq"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, room):
        return room.member_count

    def get_readonly_fields(self, request, obj=None):
        # The slug is how clients name the room: renaming it would break every client's state.
        return ["slug", "created_at", "last_seq"] if obj is not None else ["created_at", "last_seq"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "room", "created_at"]
    list_select_related = ["user", "room"]
    list_filter = ["room", "created_at"]
    search_fields = ["user__username", "room__slug"]
    autocomplete_fields = ["user", "room"]
    fields = ["user", "room", "created_at"]
    readonly_fields = ["created_at"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Read-only: messages are posted through the API (one send path, rooms.posting). Deleting
    one is allowed for moderation; history then skips it, and live streams treat the missing
    seq like a message the reader may not see."""

    list_display = ["id", "room", "sender", "created_at", "is_targeted", "short_body"]
    list_select_related = ["room", "sender"]
    list_filter = ["is_targeted", "room", "created_at"]
    search_fields = ["body"]
    fields = ["room", "seq", "sender", "body", "client_id", "is_targeted", "targets", "created_at"]
    readonly_fields = fields

    @admin.display(description="body")
    def short_body(self, message):
        return message.body if len(message.body) <= 80 else message.body[:79] + "…"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
