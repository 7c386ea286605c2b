"""No stored digest or hash is reachable from admin: not shown, searched, sorted, filtered or
looked up, through any relation, whatever the permissions (superusers included).

A digest shown in part is still an oracle: ``?digest__startswith=7`` answers yes or no, and 64
such questions read a token's digest out of the token list one hex digit at a time (issue 20);
``?digest=`` confirms a guess. Django's UserAdmin refuses lookups on ``password`` for the same
reason; this does it for every secret-derived field of every model, on every admin of ours.

A field is secret when it is named ``digest``, ``…_digest`` or ``password``, or when its model
lists it in a ``secret_fields`` attribute. (Public key material is not secret: keys and their
fingerprints stay searchable.) ``SecretLookupGuard`` is mixed into every registered ModelAdmin
(tokens.admin_scale.ScalableAdmin carries it, tokens.admin_users puts it on Django's user and
group admins); the system checks in tokens.checks refuse an admin without it and an admin whose
options name a secret field.
"""

from django.core.exceptions import FieldDoesNotExist
from django.db.models.constants import LOOKUP_SEP

SECRET_NAMES = {"digest", "password"}

# ModelAdmin options that search, sort, filter or show a field by its name or lookup path.
NAMED_OPTIONS = (
    "list_display",
    "list_display_links",
    "list_editable",
    "list_filter",
    "search_fields",
    "ordering",
    "sortable_by",
    "date_hierarchy",
    "readonly_fields",
    "raw_id_fields",
    "autocomplete_fields",
    "fields",
    "fieldsets",
)


def is_secret_field(field) -> bool:
    name = getattr(field, "name", "")
    model = getattr(field, "model", None)
    if field.is_relation and field.auto_created:
        return False  # a reverse relation named like a secret is not one
    return name in SECRET_NAMES or name.endswith("_digest") or name in getattr(model, "secret_fields", ())


def reaches_secret(model, lookup: str) -> bool:
    """Whether ``lookup`` (a filter, search or ordering path) names a secret field, directly or
    through relations: ``digest__startswith``, ``user__native_tokens__digest``, ``-user__password``."""
    lookup = lookup.lstrip("-^=@")
    for part in lookup.split(LOOKUP_SEP):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False  # the rest are transforms and lookups (or "pk", or nothing admin accepts)
        if is_secret_field(field):
            return True
        if not field.is_relation or field.related_model is None:
            return False
        model = field.related_model
    return False


class SecretLookupGuard:
    """Mixed into a ModelAdmin: what the URL asks for (``?field__lookup=``, ``?_to_field=``,
    ``?o=``, ``?q=``) never reaches a secret field, whatever the admin declares."""

    def lookup_allowed(self, lookup, value, request=None):
        if reaches_secret(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    def to_field_allowed(self, request, to_field):
        if reaches_secret(self.model, to_field):
            return False
        return super().to_field_allowed(request, to_field)

    def get_search_fields(self, request):
        return [path for path in super().get_search_fields(request) if not reaches_secret(self.model, path)]

    def get_ordering(self, request):
        return [path for path in super().get_ordering(request) if not _orders_by_secret(self, path)]

    def get_list_display(self, request):
        # ``?o=N`` sorts by the N-th column whatever ``sortable_by`` says: no column may be one.
        return [name for name in super().get_list_display(request) if not _orders_by_secret(self, name)]


def _orders_by_secret(model_admin, name) -> bool:
    """A list column or ordering entry that sorts by a secret: a field, or a display function
    whose ``ordering`` (``admin_order_field``) is one."""
    if hasattr(name, "resolve_expression"):
        return False  # an F() or an expression: not a name a URL can choose
    if callable(name):
        target = getattr(name, "admin_order_field", None)
    else:
        display = getattr(model_admin, name, None) or getattr(model_admin.model, name, None)
        target = getattr(display, "admin_order_field", None) if callable(display) else name
    return isinstance(target, str) and reaches_secret(model_admin.model, target)


def exposed_secrets(model_admin) -> list[tuple[str, str]]:
    """(option, entry) for each option of ``model_admin`` that names a secret field. A secret in
    a form (``fields``) is allowed only through a read-only widget that renders no piece of it
    (the user admin's password summary, tokens.admin_users)."""
    found = []
    for option in NAMED_OPTIONS:
        for entry in _entries(getattr(model_admin, option, None) or (), option):
            if option in ("fields", "fieldsets") and _shown_by_read_only_widget(model_admin, entry):
                continue
            if option in ("list_display", "ordering", "sortable_by"):
                secret = _orders_by_secret(model_admin, entry) or (
                    isinstance(entry, str) and reaches_secret(model_admin.model, entry)
                )
            else:
                secret = isinstance(entry, str) and reaches_secret(model_admin.model, entry)
            if secret:
                found.append((option, entry if isinstance(entry, str) else repr(entry)))
    return found


def _entries(value, option):
    if isinstance(value, str):
        yield value
        return
    for item in value:
        if option == "fieldsets":
            yield from _entries(item[1].get("fields", ()), "fields")
        elif option == "list_filter" and isinstance(item, (list, tuple)):
            yield item[0]
        elif isinstance(item, (list, tuple)):
            yield from _entries(item, option)
        else:
            yield item


def _shown_by_read_only_widget(model_admin, name) -> bool:
    form_field = getattr(model_admin.form, "declared_fields", {}).get(name)
    return getattr(getattr(form_field, "widget", None), "read_only", False) is True
