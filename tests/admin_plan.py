"""The whole admin as a list of requests, generated from its registry (tests/test_admin_matrix.py).

``build_plan`` lists what an operator's browser can ask of admin: for each registered ModelAdmin,
every named URL of its ``get_urls()`` (list, add, change, history, delete, and custom views), the
list's search, sort, filter links and filter boxes, every action of ``_get_base_actions()`` (asked,
then confirmed), every form posted (add, change with every field altered, delete), and every
autocomplete its forms use. It is generated, so a page, a filter or an action added later is walked
without anyone listing it. What cannot be guessed is declared: here, the permission each action
needs (ACTIONS) and the permissions admin never honours (NEVER); in the test's world, a sample of
each model, a valid add form, and the permission of each custom view. A missing declaration
fails the plan, saying what to declare.

Each request carries what it needs (``needs``: alternatives, each a set of permissions, any one
of which grants it), derived from the raw permissions, not from the admin's own methods: an
admin that checks the wrong permission disagrees with it.
"""

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.admin_scrape import altered_change_form, scrape

SUPERUSER = "<superuser>"  # a pseudo-permission only superusers hold
STANDARD_VIEWS = {"changelist", "add", "history", "delete", "change"}

# Permissions that exist (Django makes four per model) but that admin never honours: tokens are
# minted by logging in and only revoked; deny-list entries are never edited or removed by hand;
# memberships are added and removed, never moved; messages are posted through the API; a CA or a
# KRL is replaced, never edited; certificates are the record of logins, only read.
NEVER = {
    "tokens.add_nativetoken",
    "tokens.change_nativetoken",
    "tokens.delete_nativetoken",
    "tokens.change_revokedtoken",
    "tokens.delete_revokedtoken",
    "tokens.change_certificateauthority",
    "tokens.change_revocationlist",
    "tokens.add_sshcertificate",
    "tokens.change_sshcertificate",
    "tokens.delete_sshcertificate",
    "rooms.change_membership",
    "rooms.add_message",
    "rooms.change_message",
}


@dataclass(frozen=True)
class ActionRule:
    permission: str  # "app.codename", or "delete" for the model's own delete permission
    writes: bool  # confirmed on the samples by a principal holding it, it must change something


# Every action of every ModelAdmin, with the permission that gates it. An action missing here
# fails the plan: say which permission it needs (and give it ``permissions=`` in admin).
ACTIONS = {
    "delete_selected": ActionRule("delete", writes=False),  # cascades may need more permissions
    "revoke_selected": ActionRule("tokens.revoke_nativetoken", writes=True),
    "revoke_all_tokens": ActionRule("tokens.revoke_nativetoken", writes=True),
    "deactivate": ActionRule("auth.change_user", writes=True),
    # The CA's and the certificate's "revoke every token issued through the selected …"
    "revoke_tokens": ActionRule("tokens.revoke_nativetoken", writes=True),
}

# Adding a user takes add_user and change_user: the add form only sets a name and a password,
# the rest is edited on the change page it leads to (Django's UserAdmin.add_view).
ADD_NEEDS = {"auth.user": {"auth.add_user", "auth.change_user"}}


def perm(model, action: str) -> str:
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


def permissions_of_model(model) -> list[str]:
    opts = model._meta
    codenames = [f"{action}_{opts.model_name}" for action in opts.default_permissions]
    codenames += [codename for codename, _ in opts.permissions]
    return [f"{opts.app_label}.{codename}" for codename in codenames]


def admin_permissions() -> list[str]:
    """Every permission of every model registered in admin (what a role can be made of)."""
    return sorted({p for model in admin.site._registry for p in permissions_of_model(model)})


def alternatives(*sets) -> tuple[frozenset, ...]:
    """Needs: any one of ``sets``, each complete; a set holding a NEVER permission is dropped."""
    return tuple(frozenset(s) for s in sets if not NEVER & set(s))


def read(model):
    """Django's rule: change_X also lets one see X (even where admin offers no edit)."""
    return (frozenset({perm(model, "view")}), frozenset({perm(model, "change")}))


def granted(needs, perms: frozenset) -> bool:
    return any(alt <= perms for alt in needs)


@dataclass
class Probe:
    label: str
    method: str
    path: str
    needs: tuple | None  # alternatives of permission sets; None: no status expectation
    data: dict = field(default_factory=dict)
    model: type | None = None
    kind: str = "page"  # page, lookup (a list searched, sorted or filtered), form, preview, confirm
    writes: bool = False  # when granted, it must change something (beyond History and the log)


@dataclass
class World:
    """The data the plan acts on: samples of each registered model, a valid add form for each
    model admin can add, and markers (strings only a model's own pages may show)."""

    samples: dict  # model -> [objects]
    add_forms: dict  # model -> form data
    markers: dict  # text -> models whose pages may show it
    secrets: list  # pieces of stored digests and hashes that no page may ever show
    superuser: object = None
    custom_views: dict = field(default_factory=dict)  # url name -> CustomView


@dataclass(frozen=True)
class CustomView:
    """A view of a ModelAdmin's own ``get_urls()`` on one object: what it does to the object
    ("change" or "delete": it needs what that needs, see ``needs_on``) and a valid form for it."""

    acts_as: str
    post: dict


def needs_on(model, obj, action: str):
    """What changing or deleting ``obj`` needs: its model's permission; a superuser for an
    account with admin access (tokens.admin_users: otherwise auth.change_user is superuser)."""
    if model is get_user_model() and (obj.is_staff or obj.is_superuser):
        return alternatives({SUPERUSER})
    return alternatives({perm(model, action)})


def build_plan(client, world: World) -> list[Probe]:
    """Every request of the admin; ``client`` is logged in as ``world.superuser`` and reads the
    pages that the filters, forms and autocompletes are scraped from."""
    plan = [Probe("admin index", "GET", reverse("admin:index"), alternatives(set()))]
    autocompletes = set()
    for app_label in sorted({model._meta.app_label for model in admin.site._registry}):
        plan.append(Probe(f"{app_label} app index", "GET", reverse("admin:app_list", args=[app_label]), None))
    for model, model_admin in admin.site._registry.items():
        name = f"{model._meta.app_label}.{model._meta.model_name}"
        samples = world.samples.get(model) or list(model._default_manager.order_by("pk")[:1])
        assert samples, f"the world has no {name}: add one to build_world so its pages are walked"
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        changelist = reverse(f"admin:{prefix}changelist")
        listing = client.get(changelist).content.decode()
        found = scrape(listing)
        plan.append(Probe(f"{name} list", "GET", changelist, read(model), model=model))
        # The list's search, sort and filters: one probe per filter (a date filter's links all
        # ask the same thing of the same field), a username or slug in each filter box.
        queries = ["q=a", "o=-1"]
        filtered = set()
        for query in found.filter_links:
            fields = {key.split("__")[0] for key, _ in parse_qsl(query)}
            if fields and not fields & filtered:
                filtered |= fields
                queries.append(query)
        queries += [f"{box}=alice" for box in found.filter_boxes if box != "q"]
        for query in queries:
            plan.append(
                Probe(
                    f"{name} list?{query}",
                    "GET",
                    f"{changelist}?{query}",
                    read(model),
                    model=model,
                    kind="lookup",
                )
            )
        plan += url_probes(client, world, model, model_admin, samples, autocompletes)
        plan += action_probes(model, model_admin, samples, changelist)
    for app_label, model_name, field_name in sorted(autocompletes):
        remote = apps.get_model(app_label, model_name)._meta.get_field(field_name).remote_field.model
        query = urlencode(
            {"app_label": app_label, "model_name": model_name, "field_name": field_name, "term": "a"}
        )
        plan.append(
            Probe(
                f"autocomplete {model_name}.{field_name}",
                "GET",
                f"{reverse('admin:autocomplete')}?{query}",
                read(remote),
                model=remote,
            )
        )
    return plan


def url_probes(client, world, model, model_admin, samples, autocompletes) -> list[Probe]:
    name = f"{model._meta.app_label}.{model._meta.model_name}"
    prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
    probes = []
    for pattern in model_admin.get_urls():
        if not pattern.name:
            continue  # Django's redirect of the pre-1.9 change URL
        view = pattern.name.removeprefix(prefix)
        converters = list(pattern.pattern.converters)
        if view not in STANDARD_VIEWS:
            custom = world.custom_views.get(pattern.name)
            assert custom, f"{pattern.name} is a custom admin view: declare the permission it needs"
            for obj in samples:
                url = reverse(f"admin:{pattern.name}", kwargs=dict.fromkeys(converters, obj.pk))
                needs = needs_on(model, obj, custom.acts_as)
                probes += [
                    Probe(f"{pattern.name} {obj.pk}", "GET", url, needs, model=model),
                    Probe(
                        f"{pattern.name} {obj.pk} posted",
                        "POST",
                        url,
                        needs,
                        dict(custom.post),
                        model,
                        "form",
                        True,
                    ),
                ]
            continue
        if view == "add":
            url = reverse(f"admin:{pattern.name}")
            page = client.get(url)
            needs = alternatives(ADD_NEEDS.get(model._meta.label_lower, {perm(model, "add")}))
            if page.status_code == 200:
                autocompletes |= scrape(page.content.decode()).autocompletes
                form = world.add_forms.get(model)
                assert form is not None, f"{name} can be added in admin: give build_world a valid add form"
            else:
                form = {}
            probes += [
                Probe(f"{name} add page", "GET", url, needs, model=model),
                Probe(f"{name} add", "POST", url, needs, {**form, "_save": "Save"}, model, "form", True),
            ]
        elif view == "changelist":
            continue  # with the list probes
        else:
            for obj in samples:
                url = reverse(f"admin:{pattern.name}", args=[obj.pk])
                if view == "change":
                    page = client.get(url).content.decode()
                    autocompletes |= scrape(page).autocompletes
                    data = altered_change_form(page, model_admin, obj, world.superuser)
                    if len(data) == 1:  # a read-only record: try every editable column anyway
                        data.update(
                            {
                                f.name: "altered"
                                for f in model._meta.concrete_fields
                                if f.editable and f.get_internal_type() in ("CharField", "TextField")
                            }
                        )
                    probes += [
                        Probe(f"{name} {obj.pk} page", "GET", url, read(model), model=model),
                        Probe(
                            f"{name} {obj.pk} changed",
                            "POST",
                            url,
                            needs_on(model, obj, "change"),
                            data,
                            model,
                            "form",
                            True,
                        ),
                    ]
                elif view == "history":
                    probes.append(Probe(f"{name} {obj.pk} history", "GET", url, read(model), model=model))
                elif view == "delete":
                    needs = needs_on(model, obj, "delete")
                    probes += [
                        Probe(f"{name} {obj.pk} delete page", "GET", url, needs, model=model),
                        # Deleting may also need the delete permission of what goes with it.
                        Probe(
                            f"{name} {obj.pk} deleted",
                            "POST",
                            url,
                            needs,
                            {"post": "yes"},
                            model,
                            "form",
                            False,
                        ),
                    ]
    return probes


def action_probes(model, model_admin, samples, changelist) -> list[Probe]:
    name = f"{model._meta.app_label}.{model._meta.model_name}"
    probes = []
    for func, action, _ in model_admin._get_base_actions():
        rule = ACTIONS.get(action)
        assert rule, f"action {action!r} of {name}: declare the permission that gates it in ACTIONS"
        assert getattr(func, "allowed_permissions", None), f"action {action!r} of {name} has no permissions="
        permission = perm(model, "delete") if rule.permission == "delete" else rule.permission
        needs = alternatives({perm(model, "view"), permission}, {perm(model, "change"), permission})
        selected = {"action": action, "_selected_action": [str(obj.pk) for obj in samples], "index": "0"}
        confirmed = {**selected, "confirmed": "yes", "post": "yes", "reason": "probe"}
        probes += [
            Probe(f"{name} action {action} asked", "POST", changelist, needs, selected, model, "preview"),
            Probe(
                f"{name} action {action} confirmed",
                "POST",
                changelist,
                needs,
                confirmed,
                model,
                "confirm",
                rule.writes,
            ),
        ]
    return probes
