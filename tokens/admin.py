"""Admin for credentials. Every way of killing a credential here goes through tokens.revocation,
so it has the same effect as ``manage.py revoke_token``; no digest is ever rendered.

LoginNonce and WsTicket are deliberately not registered: they live 60 and 30 seconds, hold
nothing but a digest and a timestamp, and an operator never acts on one (revoking the
credential that minted a ticket kills the ticket; purge_tokens clears both).
"""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone

from tokens.models import NativeToken, RevokedToken, SshKey
from tokens.revocation import revoke_native_tokens
from tokens.ssh_signatures import SshKeyError, parse_public_key


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


@admin.register(NativeToken)
class NativeTokenAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "device_name",
        "user_agent",
        "created_ip",
        "created_at",
        "last_used_at",
        "expires_at",
        "status",
        "public_id",
    ]
    list_select_related = ["user"]
    search_fields = ["user__username", "public_id", "device_name"]
    list_filter = [
        StatusFilter,
        "created_at",
        "last_used_at",
        "expires_at",
        ("user", admin.RelatedOnlyFieldListFilter),
    ]
    # ``digest`` is left out of every list on purpose: it must never reach a page.
    fields = [
        "public_id",
        "user",
        "ssh_key",
        "device_name",
        "user_agent",
        "created_ip",
        "created_at",
        "last_used_at",
        "expires_at",
        "status",
        "revoked_at",
        "revoked_by",
        "revoked_reason",
    ]
    readonly_fields = fields
    actions = ["revoke_selected"]

    @admin.display(description="status")
    def status(self, token):
        return token.status

    def has_add_permission(self, request):
        return False  # tokens are minted by logging in, never typed in

    def has_change_permission(self, request, obj=None):
        return False  # the change page is a read-only record; revoking is the action below

    def has_revoke_permission(self, request):
        return request.user.has_perm("tokens.change_nativetoken")

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        count = revoke_native_tokens(queryset, by=request.user, reason="admin action")
        skipped = queryset.count() - count
        message = f"Revoked {count} token{'s' if count != 1 else ''}; their live sockets are being closed."
        if skipped:
            message += f" {skipped} selected token{'s were' if skipped != 1 else ' was'} already revoked."
        self.message_user(request, message, messages.SUCCESS)

    # Deleting a live token would leave its open sockets running (nothing else tells them),
    # so deletion revokes first, in the same transaction; the sockets close after commit.
    def delete_model(self, request, obj):
        with transaction.atomic():
            revoke_native_tokens(
                NativeToken.objects.filter(pk=obj.pk), by=request.user, reason="deleted in admin"
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            revoke_native_tokens(queryset, by=request.user, reason="deleted in admin")
            super().delete_queryset(request, queryset)


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
class RevokedTokenAdmin(admin.ModelAdmin):
    """The deny-list. Adding an entry revokes (tokens.signals applies the effects); an entry is
    never edited or deleted by hand: un-revoking is not an operation, mint a new token instead,
    and purge_tokens removes entries once their token could no longer be valid anyway."""

    form = RevokedTokenForm
    list_display = ["jti", "reason", "revoked_at", "revoked_by", "expires_at"]
    list_select_related = ["revoked_by"]
    search_fields = ["jti", "reason"]
    list_filter = ["revoked_at", "expires_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["jti", "expires_at", "reason"]
        return ["jti", "reason", "revoked_at", "revoked_by", "expires_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def get_changeform_initial_data(self, request):
        # The longest a service token can live: a safe default when the real expiry is unknown.
        longest = timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_MAX_TTL)
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
        fields = ["user", "name", "public_key"]

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

    def save(self, commit=True):
        key = super().save(commit=False)
        key.key_type = self.parsed.key_type
        key.fingerprint = self.parsed.fingerprint
        key.name = key.name or self.parsed.comment[:100]
        if commit:
            key.save()
        return key


@admin.register(SshKey)
class SshKeyAdmin(admin.ModelAdmin):
    list_display = ["user", "name", "key_type", "fingerprint", "created_at", "last_used_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "fingerprint", "name"]
    list_filter = ["key_type", "created_at", "last_used_at"]
    autocomplete_fields = ["user"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SshKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "public_key"]
        return ["user", "name", "key_type", "fingerprint", "public_key", "created_at", "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        # A key is never re-pointed at another user or edited into another key: delete it and
        # add the new one, so the fingerprint index and the audit trail stay truthful.
        if obj is None:
            return []
        return ["user", "key_type", "fingerprint", "public_key", "created_at", "last_used_at"]
