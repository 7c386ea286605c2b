"""Admin for credentials. Every way of killing a credential here goes through tokens.revocation,
so it has the same effect as ``manage.py revoke_token``; no digest is ever rendered.

Tokens are never deleted here: a token row is its own audit record (who revoked it, when, why),
and purge_tokens removes it once it is past use. Revoking asks for confirmation with the number
of tokens and live sockets it will hit. Pages stay fast at a million tokens (tokens.admin_scale).

LoginNonce and UsedTicket are deliberately not registered: a nonce lives 60 seconds and holds a
digest and a timestamp, a used ticket's claim key only says that a ticket was used, and an
operator never acts on either (revoking the credential that minted a ticket kills the ticket;
purge_tokens clears both).
"""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from live import presence
from tokens.admin_audit import RevocationPlan
from tokens.admin_scale import (
    LookupInputFilter,
    ScalableAdmin,
    confirmation,
    confirmed,
    may_view,
    user_ids_for,
)
from tokens.models import NativeToken, RevokedToken, SecurityKeyCounter, SshKey
from tokens.revocation import revoke_native_tokens
from tokens.ssh_signatures import SshKeyError, parse_public_key

DEFAULT_REASON = "admin action"
SOCKET_COUNT_BY_IDS = 20_000  # above this many tokens, count from the registry's side


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at=None, expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at=None, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.exclude(revoked_at=None)
        return queryset


class IssuedWithFilter(admin.SimpleListFilter):
    title = "issued with"
    parameter_name = "issued_with"

    def lookups(self, request, model_admin):
        return [("key", "A registered key"), ("certificate", "A certificate")]

    def queryset(self, request, queryset):
        if self.value() == "key":
            return queryset.filter(certificate=None)
        if self.value() == "certificate":
            return queryset.exclude(certificate=None)
        return queryset


class AuthorityFilter(LookupInputFilter):
    title = "certificate authority"
    parameter_name = "ca"
    placeholder = "CA name"

    def filter(self, queryset, value):
        return queryset.filter(certificate__authority__name=value)


class UserFilter(LookupInputFilter):
    title = "user"
    parameter_name = "user"
    placeholder = "username"

    def filter(self, queryset, value):
        return queryset.filter(user__username=value)


def live_sockets_of(tokens, count: int) -> int:
    """Live sockets opened with any token of ``tokens`` (``count`` of them), in every process:
    by token id for a normal selection, from the registry's side (every live socket, then
    which of their credentials are selected) for a huge one."""
    if count <= SOCKET_COUNT_BY_IDS:
        ids = tokens.values_list("public_id", flat=True)
        return sum(presence.counts_for_credentials(list(ids)).values())
    sockets = presence.all_sockets()
    credentials = list({live.credential_id for live in sockets})
    selected = set()
    for start in range(0, len(credentials), 5000):
        chunk = credentials[start : start + 5000]
        selected.update(tokens.filter(public_id__in=chunk).values_list("public_id", flat=True))
    return sum(1 for live in sockets if live.credential_id in selected)


class TokenChangeList(ChangeList):
    """The page's live-socket counts in one registry call, not one per row."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = list(self.result_list)
        counts = presence.counts_for_credentials([token.public_id for token in self.result_list])
        for token in self.result_list:
            token.live_socket_count = counts.get(token.public_id, 0)


@admin.register(NativeToken)
class NativeTokenAdmin(ScalableAdmin):
    list_display = [
        "token_id",
        "user",
        "device_name",
        "short_user_agent",
        "client_ip",
        "created_at",
        "last_used_at",
        "expires_at",
        "status",
        "live_sockets",
    ]
    list_display_links = ["token_id"]
    list_select_related = ["user"]
    # Indexed columns only: created_at, expires_at, and the unique token id.
    sortable_by = ["token_id", "created_at", "expires_at"]
    search_fields = ["public_id"]  # shows the box; get_search_results does the real work
    search_help_text = (
        "A token id or its start, a username or its start, part of a device name (3 characters "
        "or more), or the SSH key fingerprint (SHA256:…) that minted it."
    )
    list_filter = [
        StatusFilter,
        UserFilter,
        IssuedWithFilter,
        AuthorityFilter,
        "created_at",
        "last_used_at",
        "expires_at",
    ]
    # ``digest`` is left out of every list on purpose: it must never reach a page.
    fields = [
        "token_id",
        "user",
        "ssh_key_display",
        "certificate_display",
        "device_name",
        "user_agent",
        "client_ip",
        "created_at",
        "last_used_at",
        "expires_at",
        "status",
        "revoked_at",
        "revoked_by",
        "revoked_reason",
        "live_socket_table",
    ]
    readonly_fields = fields
    actions = ["revoke_selected"]
    change_form_template = "admin/tokens/nativetoken/change_form.html"

    def get_changelist(self, request, **kwargs):
        return TokenChangeList

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("user", "ssh_key", "revoked_by", "certificate", "certificate__authority")
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(public_id__startswith=term)
        users = user_ids_for(term)
        if users:
            match |= Q(user_id__in=users)
        if len(term) >= 3:
            match |= Q(device_name__icontains=term)  # the trigram index on PostgreSQL
        if term.startswith("SHA256:"):
            keys = list(SshKey.objects.filter(fingerprint=term).values_list("pk", flat=True))
            match |= Q(ssh_key_fingerprint=term) | Q(ssh_key_id__in=keys)
        return queryset.filter(match), False

    # --- columns and fields -----------------------------------------------------------------

    @admin.display(description="token id", ordering="public_id")
    def token_id(self, token):
        return token.public_id

    @admin.display(description="client IP")
    def client_ip(self, token):
        return token.created_ip or "-"

    @admin.display(description="status")
    def status(self, token):
        return token.status

    @admin.display(description="user agent")
    def short_user_agent(self, token):
        agent = token.user_agent
        return agent if len(agent) <= 40 else agent[:39] + "…"

    @admin.display(description="live sockets")
    def live_sockets(self, token):
        return getattr(token, "live_socket_count", 0)

    @admin.display(description="SSH key")
    def ssh_key_display(self, token):
        if token.ssh_key is not None:
            url = reverse("admin:tokens_sshkey_change", args=[token.ssh_key.pk])
            return format_html('<a href="{}">{}</a>', url, token.ssh_key)
        if token.certificate_id is not None:
            return f"{token.ssh_key_fingerprint} (certified, not registered)"
        if token.ssh_key_fingerprint:
            return f"{token.ssh_key_fingerprint} (deleted)"
        return "-"

    @admin.display(description="certificate")
    def certificate_display(self, token):
        certificate = token.certificate
        if certificate is None:
            return "-"
        url = reverse("admin:tokens_sshcertificate_change", args=[certificate.pk])
        authority = (
            certificate.authority.name
            if certificate.authority
            else f"{certificate.authority_fingerprint} (removed)"
        )
        return format_html(
            '<a href="{}">serial {}, key ID {}</a>, CA {}',
            url,
            certificate.serial,
            certificate.key_id,
            authority,
        )

    @admin.display(description="live sockets")
    def live_socket_table(self, token):
        return socket_table(presence.for_credentials([token.public_id])[token.public_id])

    # --- permissions: read-only rows, revocation as the one action ---------------------------

    def has_add_permission(self, request):
        return False  # tokens are minted by logging in, never typed in

    def has_change_permission(self, request, obj=None):
        return False  # the change page is a read-only record; revoking is the action below

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead; purge_tokens deletes rows once they are past use

    def has_revoke_permission(self, request):
        return request.user.has_perm(NativeToken.REVOKE_PERMISSION)

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        context["can_revoke"] = (
            obj is not None and obj.revoked_at is None and self.has_revoke_permission(request)
        )
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        if not self.has_revoke_permission(request):
            raise PermissionDenied  # Django offers it to holders only; this holds whoever calls it
        live = queryset.filter(revoked_at=None)
        if not confirmed(request):
            selected, to_revoke = queryset.count(), live.count()
            sockets = live_sockets_of(live, to_revoke)
            examples = [str(token) for token in live.select_related("user")[:10]]
            return confirmation(
                self,
                request,
                action="revoke_selected",
                title="Revoke tokens",
                question=f"Revoke {to_revoke:,} token{'s' if to_revoke != 1 else ''}?",
                impact=[
                    f"{selected:,} token{'s' if selected != 1 else ''} selected, {selected - to_revoke:,} "
                    "of them already revoked.",
                    f"{sockets:,} live socket{'s' if sockets != 1 else ''} will be closed (4401).",
                    "New requests with these tokens are refused at once, in every process.",
                ],
                examples=examples,
                examples_title="For example:" if to_revoke > len(examples) else "The tokens:",
                ask_reason=True,
                default_reason=DEFAULT_REASON,
            )
        reason = (request.POST.get("reason") or "").strip() or DEFAULT_REASON
        selected = queryset.count()  # before revoking: a "status: active" filter matches fewer after
        plan = RevocationPlan(live)
        count = revoke_native_tokens(queryset, by=request.user, reason=reason)
        plan.write(request, count, reason)
        message = f"Revoked {count} token{'s' if count != 1 else ''}; their live sockets are being closed."
        skipped = selected - count
        if skipped:
            message += f" {skipped} selected token{'s were' if skipped != 1 else ' was'} already revoked."
        self.message_user(request, message, messages.SUCCESS)
        return None


def socket_table(sockets):
    if not sockets:
        return "none"
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                live.connection_id,
                live.process,
                live.opened_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                live.client_ip or "-",
            )
            for live in sockets
        ),
    )
    return format_html(
        "<table><thead><tr><th>Connection</th><th>Process</th><th>Since</th><th>Client IP</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        rows,
    )


class RevokedTokenForm(forms.ModelForm):
    class Meta:
        model = RevokedToken
        fields = ["jti", "expires_at", "reason"]

    def clean_jti(self):
        return self.cleaned_data["jti"].strip()

    def clean_expires_at(self):
        # An entry past its expiry is ignored by the deny-list: refusing it beats a silent no-op.
        if self.cleaned_data["expires_at"] <= timezone.now():
            raise forms.ValidationError("Must be in the future: the deny-list ignores expired entries.")
        return self.cleaned_data["expires_at"]


@admin.register(RevokedToken)
class RevokedTokenAdmin(ScalableAdmin):
    """The deny-list. Adding an entry revokes (tokens.signals applies the effects) and is logged
    in History with who did it; an entry is never edited or deleted by hand: un-revoking is not
    an operation, mint a new token instead, and purge_tokens removes entries once their token
    could no longer be valid anyway."""

    form = RevokedTokenForm
    list_display = ["jti", "reason", "revoked_at", "revoked_by", "expires_at"]
    list_select_related = ["revoked_by"]
    sortable_by = ["jti", "expires_at"]
    search_fields = ["jti"]
    search_help_text = "A token id or jti, or its start; or a word of the reason."
    list_filter = ["revoked_at", "expires_at"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(jti__startswith=term) | Q(reason__icontains=term)), False

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["jti", "expires_at", "reason"]
        return ["jti", "reason", "revoked_at", "revoked_by", "expires_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def get_changeform_initial_data(self, request):
        # The longest any service token can live (the ceiling, not the current maximum, which
        # may have been higher when the token was minted): safe when the real expiry is unknown.
        longest = timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING)
        return {"expires_at": (timezone.now() + longest).replace(microsecond=0)}

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.revoked_by = request.user
        super().save_model(request, obj, form, change)


class SshKeyAddForm(forms.ModelForm):
    """Paste a public key line; type, fingerprint and the canonical form are derived from it."""

    public_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="One OpenSSH public key line, e.g. the contents of ~/.ssh/id_ed25519.pub.",
    )

    class Meta:
        model = SshKey
        fields = ["user", "name", "public_key", "verify_required"]

    def clean_public_key(self):
        try:
            self.parsed = parse_public_key(self.cleaned_data["public_key"])
        except SshKeyError as exc:
            raise forms.ValidationError(f"Not a usable public key: {exc}.") from None
        owner = SshKey.objects.filter(fingerprint=self.parsed.fingerprint).values_list(
            "user__username", flat=True
        )
        if owner:
            raise forms.ValidationError(f"This key is already registered to user {owner[0]!r}.")
        return self.parsed.openssh

    def clean(self):
        cleaned = super().clean()
        parsed = getattr(self, "parsed", None)
        if cleaned.get("verify_required") and parsed is not None and not parsed.is_security_key:
            self.add_error("verify_required", "Only security keys (sk-…) can require user verification.")
        return cleaned

    def save(self, commit=True):
        key = super().save(commit=False)
        key.key_type = self.parsed.key_type
        key.fingerprint = self.parsed.fingerprint
        key.name = key.name or self.parsed.comment[:100]
        if commit:
            key.save()
        return key


@admin.register(SshKey)
class SshKeyAdmin(ScalableAdmin):
    """Deleting a key keeps its tokens (they are revoked separately, or expire) and leaves its
    fingerprint on them (tokens.key_history): the token list finds them by that fingerprint."""

    list_display = [
        "user",
        "name",
        "key_type",
        "fingerprint",
        "verify_required",
        "created_at",
        "last_used_at",
    ]
    list_select_related = ["user"]
    sortable_by = ["fingerprint", "created_at"]
    search_fields = ["fingerprint"]
    search_help_text = (
        "A username or its start, a fingerprint (SHA256:…) or its start, or part of the key's name."
    )
    list_filter = ["key_type", "created_at", "last_used_at"]
    autocomplete_fields = ["user"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(fingerprint__startswith=term) | Q(name__icontains=term)
        users = user_ids_for(term)
        if users:
            match |= Q(user_id__in=users)
        return queryset.filter(match), False

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SshKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        # A key is never re-pointed at another user or edited into another key: delete it and
        # add the new one, so the fingerprint index and the audit trail stay truthful.
        if obj is None:
            return []
        return [
            "user",
            "key_type",
            "fingerprint",
            "public_key",
            "verify_required",
            "security_key_counter",
            "created_at",
            "last_used_at",
            "minted_tokens",
        ]

    @admin.display(description="highest signature counter seen")
    def security_key_counter(self, key):
        if not key.key_type.startswith("sk-"):
            return "- (not a security key)"
        counter = SecurityKeyCounter.objects.filter(fingerprint=key.fingerprint).first()
        return (
            "none yet"
            if counter is None
            else f"{counter.highest} (at {counter.updated_at:%Y-%m-%d %H:%M:%S})"
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "public_key", "verify_required"]
        fields = [
            "user",
            "name",
            "key_type",
            "fingerprint",
            "public_key",
            "verify_required",
            "security_key_counter",
            "created_at",
            "last_used_at",
        ]
        if may_view(self.admin_site, request, NativeToken):
            fields.append("minted_tokens")  # links to the token list: only for who may open it
        return fields

    @admin.display(description="tokens minted with it")
    def minted_tokens(self, key):
        url = reverse("admin:tokens_nativetoken_changelist")
        return format_html(
            '<a href="{}?ssh_key__id__exact={}">all tokens</a>'
            ' · <a href="{}?ssh_key__id__exact={}&status=active">active tokens</a>'
            " (after the key is deleted: search the token list for {})",
            url,
            key.pk,
            url,
            key.pk,
            key.fingerprint,
        )


from tokens import admin_identity, admin_users  # noqa: E402, F401  (CAs, certificates, the KRL; users)
