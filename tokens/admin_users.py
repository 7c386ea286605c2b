"""The user admin: Django's, plus what an operator needs to act on one person.

The change page shows the user's tokens, SSH keys, room memberships and live sockets (a few
of each, with counts and links to the full filtered lists, so a user with 50,000 tokens costs
the same as one with five), and two actions, also offered on the user list: "Revoke all
tokens" (tokens.revocation.revoke_user: native tokens, service tokens minted so far, tickets,
live sockets) and "Deactivate" (the verifier refuses them from the next request on, and
tokens.signals closes their sockets). Both confirm first, saying what they will hit, and both
are written to History.
"""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from live import presence
from tokens import admin_audit
from tokens.admin_scale import ScalableAdmin, capped_count, confirmation, confirmed, summarized_deletion
from tokens.models import NativeToken
from tokens.revocation import revoke_user

User = get_user_model()
SHOWN = 10  # rows of each kind on the change page
SOCKETS_SHOWN = 50
PER_USER_SOCKET_LOOKUPS = 20  # above this many users, read every live socket once instead


def sockets_of_users(user_ids: list[int]) -> list[presence.LiveSocket]:
    if len(user_ids) <= PER_USER_SOCKET_LOOKUPS:
        return [live for user_id in user_ids for live in presence.for_user(user_id)]
    wanted = set(user_ids)
    return [live for live in presence.all_sockets() if live.user_id in wanted]


class Section:
    """One bounded list on the user page: a few rows, how many there are, a link to all."""

    def __init__(self, title: str, rows: list, count: int, capped: bool, url: str | None):
        self.title, self.rows, self.count, self.capped, self.url = title, rows, count, capped, url

    @property
    def total(self) -> str:
        return f"more than {self.count:,}" if self.capped else f"{self.count:,}"


def overview(user) -> list[Section]:
    from rooms.models import Membership

    now = timezone.now()
    tokens = NativeToken.objects.filter(user=user)
    live_tokens = tokens.filter(revoked_at=None, expires_at__gt=now)
    token_list = reverse("admin:tokens_nativetoken_changelist")
    shown_tokens = list(live_tokens.order_by("-created_at")[:SHOWN])
    sockets = presence.for_user(user.pk)
    token_pks = dict(
        NativeToken.objects.filter(
            public_id__in={live.credential_id for live in sockets[:SOCKETS_SHOWN]}
        ).values_list("public_id", "pk")
    )
    memberships = Membership.objects.filter(user=user)
    keys = user.ssh_keys.all()
    return [
        Section(
            "Active tokens",
            [
                (
                    reverse("admin:tokens_nativetoken_change", args=[token.pk]),
                    f"{token.public_id} · {token.device_name or 'no device name'}"
                    f" · expires {token.expires_at:%Y-%m-%d}",
                )
                for token in shown_tokens
            ],
            *capped_count(live_tokens),
            f"{token_list}?user__id__exact={user.pk}&status=active",
        ),
        Section(
            "All tokens (active, expired, revoked)",
            [],
            *capped_count(tokens),
            f"{token_list}?user__id__exact={user.pk}",
        ),
        Section(
            "SSH keys",
            [(reverse("admin:tokens_sshkey_change", args=[key.pk]), str(key)) for key in keys[:SHOWN]],
            *capped_count(keys),
            f"{reverse('admin:tokens_sshkey_changelist')}?user__id__exact={user.pk}",
        ),
        Section(
            "Room memberships",
            [
                (reverse("admin:rooms_room_change", args=[m.room_id]), m.room.slug)
                for m in memberships.select_related("room").order_by("room__slug")[:SHOWN]
            ],
            *capped_count(memberships),
            f"{reverse('admin:rooms_membership_changelist')}?user__id__exact={user.pk}",
        ),
        Section(
            "Live sockets",
            [
                (
                    reverse("admin:tokens_nativetoken_change", args=[token_pks[live.credential_id]])
                    if live.credential_id in token_pks
                    else None,
                    f"{live.credential_id} · {live.process} · since {live.opened_at:%Y-%m-%d %H:%M:%S} UTC"
                    f" · client IP {live.client_ip or '-'}",
                )
                for live in sockets[:SOCKETS_SHOWN]
            ],
            len(sockets),
            False,
            None,
        ),
    ]


admin.site.unregister(User)


@admin.register(User)
class NativeUserAdmin(ScalableAdmin, UserAdmin):
    change_form_template = "admin/auth/user/native_change_form.html"
    actions = ["revoke_all_tokens", "deactivate"]
    list_filter = ("is_staff", "is_superuser", "is_active")
    sortable_by = ["username", "date_joined"]
    search_help_text = "A username or its start, or an e-mail address."

    def get_search_results(self, request, queryset, search_term):
        # Django's default is four UPPER(...) LIKE '%x%' over every user (0.4 s at 100k users);
        # this serves the list and the user autocomplete widgets from the username index.
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(username__startswith=term)
        if "@" in term:
            match |= Q(email__iexact=term)
        return queryset.filter(match), False

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["native_sections"] = overview(obj)
            context["native_can_act"] = self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_deleted_objects(self, objs, request):
        # Erasing an account takes its token rows along (their audit trail with them).
        return summarized_deletion(objs, request, self.admin_site, goes_with=(NativeToken,))

    @admin.action(description="Revoke all tokens of the selected users", permissions=["change"])
    def revoke_all_tokens(self, request, queryset):
        if not confirmed(request):
            ids = list(queryset.values_list("pk", flat=True))
            live_tokens = NativeToken.objects.filter(
                user_id__in=ids, revoked_at=None, expires_at__gt=timezone.now()
            )
            sockets = sockets_of_users(ids)
            return confirmation(
                self,
                request,
                action="revoke_all_tokens",
                title="Revoke all tokens",
                question=f"Revoke every credential of {len(ids):,} user{'s' if len(ids) != 1 else ''}?",
                impact=[
                    f"{live_tokens.count():,} active native tokens, and every service token minted for them "
                    "until now, stop working at once.",
                    f"{len(sockets):,} live socket{'s' if len(sockets) != 1 else ''} will be closed (4401).",
                    "They can log in again with their SSH keys (deactivate them to prevent that).",
                ],
                examples=[user.get_username() for user in queryset[:10]],
                examples_title="Users:",
                ask_reason=True,
                default_reason="revoked by an operator",
            )
        reason = (request.POST.get("reason") or "").strip() or "revoked by an operator"
        users = list(queryset[: admin_audit.BOUND + 1])
        revoked = touched = 0
        for user in queryset.iterator():
            revoked += revoke_user(user, by=request.user, reason=reason)
            touched += 1
        if len(users) <= admin_audit.BOUND:
            admin_audit.log_each(request, users, f"Revoked all their tokens ({reason}).")
        else:
            admin_audit.log_summary(request, f"Revoked all tokens of {touched:,} users ({reason}).")
        self.message_user(
            request,
            f"Revoked {revoked:,} native tokens of {touched:,} user{'s' if touched != 1 else ''}, "
            "and their service tokens; their live sockets are being closed.",
            messages.SUCCESS,
        )
        return None

    @admin.action(description="Deactivate the selected users", permissions=["change"])
    def deactivate(self, request, queryset):
        targets = queryset.filter(is_active=True).exclude(pk=request.user.pk)
        if not confirmed(request):
            ids = list(targets.values_list("pk", flat=True))
            sockets = sockets_of_users(ids)
            impact = [
                f"{len(ids):,} active user{'s' if len(ids) != 1 else ''}: no more logins or requests.",
                f"{len(sockets):,} live socket{'s' if len(sockets) != 1 else ''} will be closed.",
            ]
            if queryset.filter(pk=request.user.pk).exists():
                impact.append("You are in the selection: your own account is left active.")
            return confirmation(
                self,
                request,
                action="deactivate",
                title="Deactivate users",
                question=f"Deactivate {len(ids):,} user{'s' if len(ids) != 1 else ''}?",
                impact=impact,
                examples=[user.get_username() for user in targets[:10]],
                examples_title="Users:",
            )
        users = list(targets[: admin_audit.BOUND + 1])
        done = 0
        for user in targets.iterator():
            user.is_active = False
            user.save(update_fields=["is_active"])  # tokens.signals closes their sockets
            done += 1
        if len(users) <= admin_audit.BOUND:
            admin_audit.log_each(request, users, "Deactivated.")
        else:
            admin_audit.log_summary(request, f"Deactivated {done:,} users.")
        self.message_user(
            request, f"Deactivated {done:,} user{'s' if done != 1 else ''}; their sockets are being closed."
        )
        return None
