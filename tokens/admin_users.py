"""The user and group admins: Django's, plus what an operator needs to act on one person, and
no way for a staff member to give anyone (themselves included) more than they were given.

The change page shows the user's tokens, SSH keys, room memberships and live sockets
(tokens.admin_user_page), each only to a staff member who may view that kind of object, and
two actions, also offered on the user list: "Revoke all tokens" (tokens.revocation.revoke_user:
native tokens, service tokens minted so far, tickets, live sockets; needs
tokens.revoke_nativetoken) and "Deactivate" (the verifier refuses them from the next request on,
and tokens.signals closes their sockets; needs auth.change_user). Both confirm first, saying
what they will hit, and both are written to History.

Admin access is a superuser's to give. In stock Django, auth.change_user is superuser in
disguise (Django's docs say so): its holder ticks is_superuser on their own account, adds
themselves permissions or groups, or resets a superuser's password and logs in as them; and
auth.change_group adds any permission to their own group. Here, for a staff member who is not a
superuser, is_staff, is_superuser, groups, user permissions and a group's permissions are
read-only, and an account that has admin access (staff or superuser) cannot be changed,
deactivated, deleted or given a new password. auth.change_user thus manages the accounts of the
API's users, which is what native-revokers need it for.
"""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import ReadOnlyPasswordHashWidget, UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from live import presence
from tokens import admin_audit
from tokens.admin_guard import SecretLookupGuard
from tokens.admin_scale import (
    ScalableAdmin,
    confirmation,
    confirmed,
    may_view,
    summarized_deletion,
)
from tokens.admin_user_page import overview
from tokens.models import NativeToken
from tokens.revocation import revoke_user

User = get_user_model()
PER_USER_SOCKET_LOOKUPS = 20  # above this many users, read every live socket once instead


def sockets_of_users(user_ids: list[int]) -> list[presence.LiveSocket]:
    if len(user_ids) <= PER_USER_SOCKET_LOOKUPS:
        return [live for user_id in user_ids for live in presence.for_user(user_id)]
    wanted = set(user_ids)
    return [live for live in presence.all_sockets() if live.user_id in wanted]


def has_admin_access(user) -> bool:
    return user.is_staff or user.is_superuser


PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")


class PasswordSummaryWidget(ReadOnlyPasswordHashWidget):
    """Which hasher made the password, and no piece of it: Django's widget shows the first six
    characters of the salt and of the hash, and no stored hash may reach a page (API.md)."""

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        algorithm = gettext("algorithm")
        context["summary"] = [e for e in context["summary"] if "value" not in e or e["label"] == algorithm]
        return context


class NativeUserChangeForm(UserChangeForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "password" in self.fields:
            self.fields["password"].widget = PasswordSummaryWidget()


admin.site.unregister(User)


@admin.register(User)
class NativeUserAdmin(ScalableAdmin, UserAdmin):
    form = NativeUserChangeForm
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

    # --- admin access is a superuser's to give -------------------------------------------------

    def has_change_permission(self, request, obj=None):
        if obj is not None and has_admin_access(obj) and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and has_admin_access(obj) and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += [name for name in PRIVILEGE_FIELDS if name not in fields]
        return fields

    def has_revoke_tokens_permission(self, request):
        return request.user.has_perm(NativeToken.REVOKE_PERMISSION)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["native_sections"] = overview(
                obj, lambda model: may_view(self.admin_site, request, model)
            )
            context["native_can_revoke"] = self.has_revoke_tokens_permission(request)
            context["native_can_deactivate"] = obj.is_active and self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_deleted_objects(self, objs, request):
        # Erasing an account takes its token rows along (their audit trail with them).
        return summarized_deletion(objs, request, self.admin_site, goes_with=(NativeToken,))

    @admin.action(description="Revoke all tokens of the selected users", permissions=["revoke_tokens"])
    def revoke_all_tokens(self, request, queryset):
        if not self.has_revoke_tokens_permission(request):
            raise PermissionDenied
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
        if not self.has_change_permission(request):
            raise PermissionDenied
        targets = queryset.filter(is_active=True).exclude(pk=request.user.pk)
        if not request.user.is_superuser:
            targets = targets.filter(is_staff=False, is_superuser=False)
        if not confirmed(request):
            ids = list(targets.values_list("pk", flat=True))
            sockets = sockets_of_users(ids)
            impact = [
                f"{len(ids):,} active user{'s' if len(ids) != 1 else ''}: no more logins or requests.",
                f"{len(sockets):,} live socket{'s' if len(sockets) != 1 else ''} will be closed.",
            ]
            if queryset.filter(pk=request.user.pk).exists():
                impact.append("You are in the selection: your own account is left active.")
            if (
                not request.user.is_superuser
                and queryset.filter(Q(is_staff=True) | Q(is_superuser=True)).exists()
            ):
                impact.append(
                    "Accounts with admin access are left as they are: only a superuser may change them."
                )
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


admin.site.unregister(Group)


@admin.register(Group)
class NativeGroupAdmin(SecretLookupGuard, GroupAdmin):
    """Django's group admin; a group's permissions are a superuser's to set (see above)."""

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser and "permissions" not in fields:
            fields.append("permissions")
        return fields
