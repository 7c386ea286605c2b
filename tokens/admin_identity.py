"""Admin for what certificate and security-key logins are checked against: trusted CAs, the
certificates that logged in, and the KRL in force.

Trusting a CA, removing one and loading a KRL go through the same services as `add_ssh_ca`,
`remove_ssh_ca` and `load_krl` (tokens.authorities, tokens.revocation, tokens.krl_store), so
they have the same effect: removing a CA revokes every token issued through it, loading a KRL
revokes what it names, and live sockets close 4401 in every process. Nothing here is edited
in place (a CA's key or a KRL is replaced, never changed): CAs and the KRL have view, add and
delete permissions; certificates are a read-only record. The revoke actions need
``tokens.revoke_nativetoken``, like every other revocation in admin. No page searches or filters
by a hash: CAs are found by name, certificates by key ID, serial or principal.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html

from tokens.admin_scale import LookupInputFilter, ScalableAdmin
from tokens.authorities import AuthorityError, clean_principals, parse_authority_key
from tokens.krl import KrlError
from tokens.krl_store import MAX_KRL_BYTES, load
from tokens.models import CertificateAuthority, NativeToken, RevocationList, SshCertificate
from tokens.revocation import remove_authority, revoke_authority_tokens, revoke_certificate_tokens

REVOKE_PERMISSION = NativeToken.REVOKE_PERMISSION
# Hashes (of certificates, of keys) and the KRL's bytes: shown on a record's page where useful,
# never a way to probe rows through ?field__startswith= URLs (Django allows lookups on any
# local field by default).
HASH_FIELDS = frozenset({"identity", "fingerprint", "key_fingerprint", "authority_fingerprint", "data"})


class NoHashLookups:
    def lookup_allowed(self, lookup, value, request=None):
        if HASH_FIELDS & set(lookup.split("__")):
            return False
        return super().lookup_allowed(lookup, value, request)


def tokens_link(query: str, label: str = "tokens issued through it"):
    return format_html('<a href="{}?{}">{}</a>', reverse("admin:tokens_nativetoken_changelist"), query, label)


class CertificateAuthorityForm(forms.ModelForm):
    public_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="The CA's public key line, e.g. the contents of ca.pub (never the private key).",
    )

    class Meta:
        model = CertificateAuthority
        fields = ["name", "public_key", "principals"]

    def clean_public_key(self):
        try:
            self.parsed = parse_authority_key(self.cleaned_data["public_key"])
        except AuthorityError as exc:
            raise forms.ValidationError(str(exc)) from None
        existing = CertificateAuthority.objects.filter(fingerprint=self.parsed.fingerprint).first()
        if existing is not None:
            raise forms.ValidationError(f"This key is already trusted as CA {existing.name!r}.")
        return self.parsed.openssh

    def clean_principals(self):
        try:
            return clean_principals(self.cleaned_data["principals"])
        except AuthorityError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(NoHashLookups, ScalableAdmin):
    form = CertificateAuthorityForm
    list_display = ["name", "key_type", "fingerprint", "principals_allowed", "added_by", "created_at"]
    search_fields = ["name"]
    search_help_text = "A CA's name or part of it."
    readonly_fields = ["key_type", "fingerprint", "added_by", "created_at", "issued_tokens"]
    actions = ["revoke_tokens"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        return (queryset.filter(name__icontains=term), False) if term else (queryset, False)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "public_key", "principals"]
        return [
            "name",
            "key_type",
            "fingerprint",
            "public_key",
            "principals",
            "added_by",
            "created_at",
            "issued_tokens",
        ]

    @admin.display(description="may certify")
    def principals_allowed(self, authority):
        return authority.principals or "any user"

    @admin.display(description="tokens")
    def issued_tokens(self, authority):
        return tokens_link(f"ca={authority.name}")

    def has_change_permission(self, request, obj=None):
        return False  # a CA is removed and added again, never edited into another one

    def save_model(self, request, obj, form, change):
        obj.key_type = form.parsed.key_type
        obj.fingerprint = form.parsed.fingerprint
        obj.added_by = f"admin ({request.user.get_username()})"
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        count = remove_authority(obj, by=request.user, reason=f"CA {obj.name} removed in admin")
        self.message_user(
            request, f"Revoked {count} token(s) issued through CA {obj.name!r}.", messages.SUCCESS
        )

    def delete_queryset(self, request, queryset):
        for authority in queryset:
            self.delete_model(request, authority)

    def has_revoke_permission(self, request):
        return request.user.has_perm(REVOKE_PERMISSION)

    @admin.action(description="Revoke every token issued through the selected CAs", permissions=["revoke"])
    def revoke_tokens(self, request, queryset):
        count = revoke_authority_tokens(list(queryset), by=request.user, reason="admin: revoked by CA")
        self.message_user(request, f"Revoked {count} token(s); their live sockets are being closed.")


class AuthorityFilter(LookupInputFilter):
    title = "CA"
    parameter_name = "ca"
    placeholder = "CA name"

    def filter(self, queryset, value):
        return queryset.filter(authority__name=value)


@admin.register(SshCertificate)
class SshCertificateAdmin(NoHashLookups, ScalableAdmin):
    """Every certificate that logged in, once: the record its tokens point to."""

    list_display = [
        "serial",
        "key_id",
        "principals",
        "authority",
        "key_type",
        "valid_before",
        "first_used_at",
    ]
    list_select_related = ["authority"]
    list_filter = [AuthorityFilter, "valid_before", "first_used_at"]
    search_fields = ["key_id"]
    search_help_text = "A key ID or its start, a serial number, or a principal."
    sortable_by = ["valid_before", "first_used_at"]
    actions = ["revoke_tokens"]
    fields = [
        "serial",
        "key_id",
        "principals",
        "authority",
        "authority_fingerprint",
        "key_type",
        "key_fingerprint",
        "valid_after",
        "valid_before",
        "first_used_at",
        "certificate",
        "issued_tokens",
    ]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(key_id__startswith=term) | Q(principals__icontains=term)
        if term.isdigit():
            match |= Q(serial=term)
        return queryset.filter(match), False

    @admin.display(description="tokens")
    def issued_tokens(self, certificate):
        return tokens_link(f"certificate__id__exact={certificate.pk}")

    def has_add_permission(self, request):
        return False  # recorded by logging in

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the record of how tokens were issued; revoke instead

    def has_revoke_permission(self, request):
        return request.user.has_perm(REVOKE_PERMISSION)

    @admin.action(
        description="Revoke every token issued through the selected certificates", permissions=["revoke"]
    )
    def revoke_tokens(self, request, queryset):
        count = revoke_certificate_tokens(queryset, by=request.user, reason="admin: revoked by certificate")
        self.message_user(request, f"Revoked {count} token(s); their live sockets are being closed.")


class RevocationListForm(forms.ModelForm):
    file = forms.FileField(
        help_text="A binary OpenSSH KRL, as `ssh-keygen -k` writes it. It replaces the KRL in force."
    )

    class Meta:
        model = RevocationList
        fields = []

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_KRL_BYTES:
            raise forms.ValidationError("Over 64 MiB: not a KRL this server loads.")
        self.data_bytes = upload.read()
        try:
            from tokens.krl import parse_krl

            parse_krl(self.data_bytes)
        except KrlError as exc:
            raise forms.ValidationError(f"Not a KRL OpenSSH would load: {exc}.") from None
        return upload


@admin.register(RevocationList)
class RevocationListAdmin(NoHashLookups, ScalableAdmin):
    """The KRL in force: when it was loaded, by whom, from where, and what it revokes."""

    form = RevocationListForm
    list_display = ["__str__", "loaded_at", "loaded_by", "source", "generated_at", "comment", "revokes"]
    readonly_fields = ["loaded_at", "loaded_by", "source", "version", "generated_at", "comment", "revokes"]

    def get_fields(self, request, obj=None):
        return ["file"] if obj is None else self.readonly_fields

    @admin.display(description="revokes")
    def revokes(self, krl):
        return (
            ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in krl.summary.items() if value)
            or "nothing"
        )

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        upload = form.cleaned_data["file"]
        result = load(form.data_bytes, source=upload.name, loaded_by=f"admin ({request.user.get_username()})")
        obj.pk, obj.loaded_at = result.row.pk, result.row.loaded_at
        obj.version, obj.summary = result.row.version, result.row.summary
        self.message_user(
            request,
            f"KRL loaded: {len(result.keys)} registered key(s) and {len(result.certificates)} certificate(s) "
            f"revoked, {result.tokens_revoked} token(s) revoked; their live sockets are being closed.",
            messages.SUCCESS,
        )
