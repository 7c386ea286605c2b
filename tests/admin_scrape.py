"""What a browser would submit from an admin page: the change form's fields, the filter
sidebar's links and boxes, the autocomplete widgets (tests/admin_plan.py)."""

from html.parser import HTMLParser

from django.test import RequestFactory


class FormScraper(HTMLParser):
    """What a browser would submit from the change form, the filter sidebar's links and boxes,
    and the autocomplete widgets of a page."""

    def __init__(self, form_id: str | None = None):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.in_form = False
        self.in_filters = 0
        self.fields: list[tuple[str, str, str]] = []  # (kind, name, value)
        self.unchecked: list[str] = []
        self.filter_links: list[str] = []
        self.filter_boxes: list[str] = []
        self.autocompletes: set[tuple[str, str, str]] = set()
        self._select: tuple[str, bool] | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.form_id and a.get("id") == self.form_id:
            self.in_form = True
        if tag == "nav" and a.get("id") == "changelist-filter":
            self.in_filters = 1
        elif tag == "nav" and self.in_filters:
            self.in_filters += 1
        if self.in_filters and tag == "a" and (a.get("href") or "").startswith("?"):
            self.filter_links.append(a["href"][1:])
        if self.in_filters and tag == "input" and a.get("type") == "text" and a.get("name"):
            self.filter_boxes.append(a["name"])
        if tag == "select" and "data-app-label" in a and "data-field-name" in a:
            self.autocompletes.add((a["data-app-label"], a["data-model-name"], a["data-field-name"]))
        if not self.in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("submit", "button", "file", "image"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((kind, name, a.get("value", "on")))
                elif kind == "checkbox":
                    self.unchecked.append(name)
                return
            self.fields.append((kind, name, a.get("value", "")))
        elif tag == "select" and name:
            self._select = (name, "multiple" in a)
            self.fields.append(("select-multiple" if "multiple" in a else "select", name, None))
        elif tag == "option" and self._select and "selected" in a:
            self.fields.append(("option", self._select[0], a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields.append(("textarea", name, ""))

    def handle_data(self, data):
        if self._textarea is not None:
            kind, name, value = self.fields[-1]
            self.fields[-1] = (kind, name, value + data)

    def handle_endtag(self, tag):
        if tag == "form" and self.in_form:
            self.in_form = False
        if tag == "nav" and self.in_filters:
            self.in_filters -= 1
        if tag == "select":
            self._select = None
        if tag == "textarea":
            self._textarea = None


def scrape(html: str, form_id: str | None = None) -> FormScraper:
    scraper = FormScraper(form_id)
    scraper.feed(html)
    return scraper


def altered_change_form(page: str, model_admin, obj, superuser) -> dict:
    """The change form as the page has it, with everything a principal could try to alter
    altered: the first text field edited, every unchecked box checked, and one more choice in
    every multiple choice (members to add, groups, permissions)."""
    scraper = scrape(page, f"{model_admin.opts.model_name}_form")
    data: dict[str, list[str]] = {}
    multiple = set()
    for kind, name, value in scraper.fields:
        if kind == "select-multiple":
            multiple.add(name)
            data.setdefault(name, [])
        elif kind == "select":
            data.setdefault(name, [])
        elif value is not None:
            data.setdefault(name, []).append(value)
    edited = next(
        (
            name
            for kind, name, value in scraper.fields
            if kind == "text" and value and not name.startswith(("_", "initial-")) and "-" not in name
        ),
        None,
    )
    if edited:
        data[edited] = [data[edited][0] + "2"]
    for name in scraper.unchecked:
        data[name] = ["on"]
    request = RequestFactory().get("/")
    request.user = superuser
    form_class = model_admin.get_form(request, obj, change=True)
    for name in multiple:
        form_field = form_class.base_fields.get(name)
        queryset = getattr(form_field, "queryset", None)
        if queryset is not None:
            extra = queryset.exclude(pk__in=data[name]).order_by("pk").values_list("pk", flat=True).first()
            if extra is not None:
                data[name].append(str(extra))
    data["_save"] = ["Save"]
    return data
