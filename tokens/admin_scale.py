"""What every admin page of ours shares so that it stays fast at millions of rows.

Django's admin defaults assume small tables: a COUNT(*) of the whole table on every list page
(twice with ``show_full_result_count``), facet counts that aggregate one column per choice
("Show counts" on a 2,000-user filter is a query of more than 1,664 columns, which PostgreSQL
refuses), filters that list every related object (20,000 "By user" links), searches that are
``UPPER(col) LIKE '%x%'`` over every column (full scans, and ORs across joins that no index
serves), and a delete confirmation that loads every related row. Here instead:

- counts are capped (``CappedPaginator``): at most CAP + 1 rows are counted, and the page says
  "more than 10,000"; nobody pages past page 100, they narrow the search;
- facets are off, and filters on big relations are a text box (``LookupInputFilter``);
- each admin writes its own ``get_search_results`` on indexed columns (exact or prefix matches,
  related ids resolved first, so each OR arm can use its own index);
- delete confirmations for objects with many dependents show counts (``summarized_deletion``).

It also carries tokens.admin_guard.SecretLookupGuard: no lookup of any page reaches a digest.
"""

from django.contrib import admin
from django.contrib.admin.utils import model_ngettext
from django.core.paginator import Paginator
from django.db import models
from django.utils.functional import cached_property
from django.utils.text import capfirst

from tokens.admin_guard import SecretLookupGuard

CAP = 10_000
SEARCH_CAP = 1_000
RELATED_IDS_CAP = 1000  # usernames (or keys) a search term may stand for


def capped_count(queryset, cap: int = CAP) -> tuple[int, bool]:
    """(min(count, cap), whether there are more): SELECT COUNT(*) FROM (SELECT … LIMIT cap + 1)."""
    counted = queryset.order_by()[: cap + 1].count()
    return min(counted, cap), counted > cap


class CappedPaginator(Paginator):
    """A paginator that never counts more than CAP rows; ``capped`` says there are more."""

    cap = CAP
    capped = False

    @cached_property
    def count(self):
        count, self.capped = capped_count(self.object_list, self.cap)
        return count


class ScalableAdmin(SecretLookupGuard, admin.ModelAdmin):
    paginator = CappedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        paginator = super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)
        if request.GET.get("q"):
            # A search that matches thousands is refined, not paged through: counting to 1,000
            # instead of 10,000 saves reading 9,000 matching rows (a device-name substring).
            paginator.cap = SEARCH_CAP
        return paginator


class LookupInputFilter(admin.ListFilter):
    """A filter that is a text box (a username, a room slug) instead of one link per object.

    Subclasses set ``title``, ``parameter_name``, ``placeholder`` and ``filter(queryset, value)``.
    """

    template = "admin/native/input_filter.html"
    parameter_name = None
    placeholder = ""

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.value = None
        if self.parameter_name in params:
            self.value = params.pop(self.parameter_name)[-1].strip() or None
            if self.value:
                self.used_parameters[self.parameter_name] = self.value

    def has_output(self):
        return True

    def expected_parameters(self):
        return [self.parameter_name]

    def choices(self, changelist):
        others = {
            key: values[-1]
            for key, values in changelist.get_filters_params().items()
            if key != self.parameter_name
        }
        if changelist.query:
            others["q"] = changelist.query
        yield {
            "value": self.value or "",
            "parameter_name": self.parameter_name,
            "placeholder": self.placeholder,
            "hidden": others,
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
        }

    def queryset(self, request, queryset):
        if self.value:
            return self.filter(queryset, self.value)
        return queryset

    def filter(self, queryset, value):
        raise NotImplementedError


def may_view(admin_site, request, model) -> bool:
    """Whether the staff member may open ``model``'s pages: what a page of another model asks
    before it shows that model's rows or links to them."""
    model_admin = admin_site._registry.get(model)
    return model_admin is not None and model_admin.has_view_permission(request)


def user_ids_for(term: str) -> list[int]:
    """Users whose username is ``term`` or starts with it (the unique index, and on PostgreSQL
    its varchar_pattern_ops twin, serve both): at most RELATED_IDS_CAP of them."""
    from django.contrib.auth import get_user_model

    User = get_user_model()  # noqa: N806
    return list(User.objects.filter(username__startswith=term).values_list("pk", flat=True)[:RELATED_IDS_CAP])


def summarized_deletion(objs, request, admin_site, *, goes_with=()):
    """``get_deleted_objects`` for objects with many dependents: one COUNT per cascading relation
    instead of Django's list of every row (and Collector's loading of them): deleting a room
    must not render its 10 million messages. Returns what Django's version returns.

    ``goes_with``: models that cannot be deleted on their own in the admin but go with their
    parent (a user's tokens, when the account itself is erased)."""
    model = objs[0]._meta.model
    counts = {model: len(objs)}
    for relation in model._meta.related_objects:
        if relation.on_delete is not models.CASCADE or relation.many_to_many:
            continue  # SET_NULL and DO_NOTHING keep the rows; m2m rows are links, not objects
        related = relation.related_model
        found = related._base_manager.filter(**{f"{relation.field.name}__in": objs}).count()
        if found:
            counts[related] = counts.get(related, 0) + found
    perms_needed = {
        related._meta.verbose_name
        for related in counts
        if related in admin_site._registry
        and related not in goes_with
        and not admin_site._registry[related].has_delete_permission(request)
    }
    lines = [f"{capfirst(model_ngettext(related, n))}: {n:,}" for related, n in counts.items()]
    model_count = {related._meta.verbose_name_plural: n for related, n in counts.items()}
    return lines, model_count, perms_needed, []


def confirmation(modeladmin, request, *, action: str, title: str, question: str, impact: list[str], **extra):
    """The page shown before a mass action; its form re-posts the same selection with
    ``confirmed=yes`` to the same changelist URL (filters and search included)."""
    from django.contrib.admin import helpers
    from django.template.response import TemplateResponse
    from django.urls import reverse

    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": opts,
        "title": title,
        "question": question,
        "impact": impact,
        "action": action,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across") == "1",
        "form_url": request.get_full_path(),
        "cancel_url": request.get_full_path()
        if request.GET
        else reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        "confirm_label": "Yes, I'm sure",
        **extra,
    }
    return TemplateResponse(request, "admin/native/confirm_action.html", context)


def confirmed(request) -> bool:
    return request.POST.get("confirmed") == "yes"
