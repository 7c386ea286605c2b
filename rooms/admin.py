"""Admin for rooms, memberships and messages, at 10,000 members a room and 10 million messages.

A room's page has no form row per member (an inline of 1,000 members was 1,004 queries, 990 KB,
and a save refused for too many fields): it shows the member count with links to the
membership list filtered to the room, and one autocomplete field to add members. Members are
removed from the membership list (search, select, delete, confirm).

Removing a membership here (its delete page, or the bulk "delete selected" action) deletes
Membership rows through the ORM collector, which sends post_delete for each row, so
rooms.signals unsubscribes the user's live sockets exactly as ``manage.py remove_member``
does. A membership is never edited in place: changing its user or room would move access
without telling anyone's sockets, so it is removed and added instead. Every addition and
removal is in History with who did it.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils.html import format_html

from rooms.membership import add_member
from rooms.models import Membership, Message, Room
from tokens.admin_audit import BOUND
from tokens.admin_scale import LookupInputFilter, ScalableAdmin, may_view, summarized_deletion, user_ids_for

BODY_SEARCH_WINDOW = 100_000  # body search looks at this many of the room's latest messages
TARGETS_SHOWN = 20


class RoomFilter(LookupInputFilter):
    title = "room"
    parameter_name = "room"
    placeholder = "room slug"

    def filter(self, queryset, value):
        return queryset.filter(room__slug=value)


class MemberFilter(LookupInputFilter):
    title = "user"
    parameter_name = "user"
    placeholder = "username"

    def filter(self, queryset, value):
        return queryset.filter(user__username=value)


ADD_MEMBERSHIP = "rooms.add_membership"


class RoomForm(forms.ModelForm):
    class Meta:
        model = Room
        fields = ["slug", "name"]


class RoomWithMembersForm(RoomForm):
    """The room form for a staff member who may add memberships."""

    add_members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.all(),
        required=False,
        widget=AutocompleteSelectMultiple(Membership._meta.get_field("user"), admin.site),
        help_text="Type a username. To remove members, use the membership list (link above).",
    )


@admin.register(Room)
class RoomAdmin(ScalableAdmin):
    form = RoomForm
    list_display = ["slug", "name", "member_count", "created_at"]
    sortable_by = ["slug", "created_at"]
    search_fields = ["slug"]
    search_help_text = "A room slug or its start, or part of its name."

    def get_queryset(self, request):
        # A correlated count, evaluated for the rows of the page only (a GROUP BY over every
        # membership would be computed before the LIMIT).
        members = (
            Membership.objects.filter(room=OuterRef("pk"))
            .order_by()
            .values("room")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(member_count=Subquery(members, output_field=IntegerField()))
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(slug__startswith=term) | Q(name__icontains=term)), False

    @admin.display(description="members")
    def member_count(self, room):
        return room.member_count or 0

    def may_add_members(self, request) -> bool:
        return request.user.has_perm(ADD_MEMBERSHIP)

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = RoomWithMembersForm if self.may_add_members(request) else RoomForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        fields = ["slug", "name"] if obj is None else ["slug", "name", "created_at", "last_seq", "members"]
        return fields + ["add_members"] if self.may_add_members(request) else fields

    def get_object(self, request, object_id, from_field=None):
        room = super().get_object(request, object_id, from_field)
        if room is not None:  # what the "members" line may link to, for this staff member
            room.may_list_members = may_view(self.admin_site, request, Membership)
            room.may_add_members = self.may_add_members(request)
        return room

    def get_readonly_fields(self, request, obj=None):
        # The slug is how clients name the room: renaming it would break every client's state.
        if obj is None:
            return ["created_at", "last_seq"]
        return ["slug", "created_at", "last_seq", "members"]

    @admin.display(description="members")
    def members(self, room):
        count = Membership.objects.filter(room=room).count()
        shown = format_html("{}", f"{count:,} member{'s' if count != 1 else ''}")
        if getattr(room, "may_list_members", False):
            listing = reverse("admin:rooms_membership_changelist")
            shown = format_html(
                '{} · <a href="{}?room__id__exact={}">list, search and remove</a>', shown, listing, room.pk
            )
        if getattr(room, "may_add_members", False):
            shown = format_html(
                '{} · <a href="{}?room={}">add one</a>', shown, reverse("admin:rooms_membership_add"), room.pk
            )
        return shown

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        room = form.instance
        requested = form.cleaned_data.get("add_members") or ()
        if requested and not self.may_add_members(request):
            raise PermissionDenied  # the form has no such field for them; this holds whatever form
        added = [user for user in requested if add_member(room, user)]
        if added:
            created = Membership.objects.filter(room=room, user__in=added).select_related("user", "room")
            LogEntry.objects.log_actions(
                request.user.pk, list(created[:BOUND]), ADDITION, "Added on the room's page."
            )
            names = ", ".join(user.get_username() for user in added[:10])
            more = f" and {len(added) - 10} more" if len(added) > 10 else ""
            self.message_user(request, f"Added {names}{more} to {room.slug}.", messages.SUCCESS)

    def construct_change_message(self, request, form, formsets, add=False):
        # "add_members" is not a room field: each membership it adds has its own History entry.
        if "add_members" in form.changed_data:
            form.changed_data.remove("add_members")
        return super().construct_change_message(request, form, formsets, add)

    def get_deleted_objects(self, objs, request):
        return summarized_deletion(objs, request, self.admin_site)


@admin.register(Membership)
class MembershipAdmin(ScalableAdmin):
    list_display = ["user", "room", "created_at"]
    list_select_related = ["user", "room"]
    list_filter = [RoomFilter, MemberFilter, "created_at"]
    sortable_by = ["created_at"]
    search_fields = ["room__slug"]
    search_help_text = "A username or its start, or a room slug or its start."
    autocomplete_fields = ["user", "room"]
    fields = ["user", "room", "created_at"]
    readonly_fields = ["created_at"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        rooms = list(Room.objects.filter(slug__startswith=term).values_list("pk", flat=True)[:1000])
        match = Q(room_id__in=rooms)
        users = user_ids_for(term)
        if users:
            match |= Q(user_id__in=users)
        return queryset.filter(match), False

    def has_change_permission(self, request, obj=None):
        return False


class MessageRoomFilter(RoomFilter):
    def filter(self, queryset, value):
        room = Room.objects.filter(slug=value).values_list("pk", flat=True).first()
        return queryset.filter(room_id=room)


@admin.register(Message)
class MessageAdmin(ScalableAdmin):
    """Read-only: messages are posted through the API (one send path, rooms.posting). Deleting
    one is allowed for moderation; history then skips it, and live streams treat the missing
    seq like a message the reader may not see."""

    list_display = ["id", "room", "sender", "created_at", "is_targeted", "short_body"]
    list_select_related = ["room", "sender"]
    list_filter = [MessageRoomFilter, "is_targeted", "created_at"]
    ordering = ["-id"]
    sortable_by = ["id"]
    search_fields = ["body"]
    search_help_text = (
        "A message id; a sender's username; or words of the body, among the latest "
        f"{BODY_SEARCH_WINDOW:,} messages of the room chosen in the filter."
    )
    fields = ["room", "seq", "sender", "body", "client_id", "is_targeted", "target_list", "created_at"]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(sender_id__in=user_ids_for(term))
        if term.isdigit():
            match |= Q(pk=int(term))
        room = Room.objects.filter(slug=request.GET.get("room", "")).values_list("pk", flat=True).first()
        if room is not None:
            # The id of the room's BODY_SEARCH_WINDOW-th latest message, from the (room, id) index.
            floor = list(
                Message.objects.filter(room_id=room)
                .order_by("-id")
                .values_list("id", flat=True)[BODY_SEARCH_WINDOW - 1 : BODY_SEARCH_WINDOW]
            )
            recent = Q(room_id=room, body__icontains=term)
            match |= recent & Q(id__gte=floor[0]) if floor else recent
        return queryset.filter(match), False

    @admin.display(description="body")
    def short_body(self, message):
        return message.body if len(message.body) <= 80 else message.body[:79] + "…"

    @admin.display(description="targets")
    def target_list(self, message):
        if not message.is_targeted:
            return "everyone in the room"
        targets = list(
            message.targets.order_by("username").values_list("username", flat=True)[: TARGETS_SHOWN + 1]
        )
        shown = ", ".join(targets[:TARGETS_SHOWN])
        if len(targets) > TARGETS_SHOWN:
            shown += f" and {message.targets.count() - TARGETS_SHOWN:,} more"
        return shown

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
