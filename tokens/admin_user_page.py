"""What a user's admin page shows about their access: tokens, SSH keys, room memberships and
live sockets, a few of each, with counts and links to the full filtered lists (so a user with
50,000 tokens costs the same as one with five). Each section only for a staff member who may
view that kind of object (the caller says who may, tokens.admin_users)."""

from django.urls import reverse
from django.utils import timezone

from live import presence
from rooms.models import Membership
from tokens.admin_scale import capped_count
from tokens.models import NativeToken, SshKey

SHOWN = 10  # rows of each kind on the change page
SOCKETS_SHOWN = 50


class Section:
    """One bounded list on the user page: a few rows, how many there are, a link to all."""

    def __init__(self, title: str, rows: list, count: int, capped: bool, url: str | None):
        self.title, self.rows, self.count, self.capped, self.url = title, rows, count, capped, url

    @property
    def total(self) -> str:
        return f"more than {self.count:,}" if self.capped else f"{self.count:,}"


def overview(user, visible) -> list[Section]:
    """The sections of ``user``'s page; ``visible(model)`` says which the viewer may see."""
    sections = []
    if visible(NativeToken):
        sections += token_sections(user)
    if visible(SshKey):
        keys = user.ssh_keys.all()
        sections.append(
            Section(
                "SSH keys",
                [(reverse("admin:tokens_sshkey_change", args=[key.pk]), str(key)) for key in keys[:SHOWN]],
                *capped_count(keys),
                f"{reverse('admin:tokens_sshkey_changelist')}?user__id__exact={user.pk}",
            )
        )
    if visible(Membership):
        memberships = Membership.objects.filter(user=user)
        sections.append(
            Section(
                "Room memberships",
                [
                    (reverse("admin:rooms_room_change", args=[m.room_id]), m.room.slug)
                    for m in memberships.select_related("room").order_by("room__slug")[:SHOWN]
                ],
                *capped_count(memberships),
                f"{reverse('admin:rooms_membership_changelist')}?user__id__exact={user.pk}",
            )
        )
    if visible(NativeToken):
        sections.append(live_socket_section(user))
    return sections


def token_sections(user) -> list[Section]:
    now = timezone.now()
    tokens = NativeToken.objects.filter(user=user)
    live_tokens = tokens.filter(revoked_at=None, expires_at__gt=now)
    token_list = reverse("admin:tokens_nativetoken_changelist")
    shown_tokens = list(live_tokens.order_by("-created_at")[:SHOWN])
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
    ]


def live_socket_section(user) -> Section:
    sockets = presence.for_user(user.pk)
    token_pks = dict(
        NativeToken.objects.filter(
            public_id__in={live.credential_id for live in sockets[:SOCKETS_SHOWN]}
        ).values_list("public_id", "pk")
    )
    return Section(
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
    )
