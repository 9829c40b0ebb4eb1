"""Rendering an email template into a subject line, a plain-text body and an HTML body.

Each template is three jinja2 files in templates/: <name>.subject.txt, <name>.txt and
<name>.html. The .html files are autoescaped; the others are plain text. The bodies extend
layout.txt and layout.html, which hold the greeting and the footer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from jinja2 import meta, nodes
from markupsafe import Markup, escape
from mcsv.v1 import common_pb2

from internal.urls import url_problem

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Every template greets the user and names the address it was sent to.
COMMON_VARIABLES = ("user_name", "recipient")


@dataclass(frozen=True)
class _Template:
    name: str
    # Variables it needs beyond COMMON_VARIABLES.
    required: tuple[str, ...]


_TEMPLATES: dict[int, _Template] = {
    common_pb2.EMAIL_TEMPLATE_WELCOME: _Template("welcome", ()),
    common_pb2.EMAIL_TEMPLATE_NOTIFICATION: _Template("notification", ("title", "body")),
    # Optional: pdf_bytes, page_width_points and page_height_points (both or neither),
    # expires_at (ISO 8601).
    common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE: _Template(
        "conversion_complete", ("pdf_url", "filename")
    ),
}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class TemplateError(Exception):
    """The template is unknown, or its variables are missing or malformed."""


def required_variables(template: int) -> tuple[str, ...]:
    """The variables `render` needs for this template."""
    return (*COMMON_VARIABLES, *_lookup(template).required)


def render(template: int, variables: Mapping[str, str]) -> RenderedEmail:
    """Renders a template (a mcsv.v1.EmailTemplate value) with its variables. Variables the
    template does not use are ignored."""
    spec = _lookup(template)
    _require_variables(spec, variables)
    environment = _environment()
    context = dict(variables)
    try:
        subject = environment.get_template(f"{spec.name}.subject.txt").render(context)
        text = environment.get_template(f"{spec.name}.txt").render(context)
        html = environment.get_template(f"{spec.name}.html").render(context)
    except jinja2.UndefinedError as error:
        raise TemplateError(f"the {spec.name} email: {error.message}") from error
    except TemplateError as error:  # a malformed value, found by one of the filters below
        raise TemplateError(f"the {spec.name} email: {error}") from error
    # A subject is one header line: newlines in a variable must not start a new header.
    return RenderedEmail(subject=" ".join(subject.split()), text=text, html=html)


def check(template: int, variables: Mapping[str, str]) -> None:
    """TemplateError if `render` would refuse these variables, rendering only when that could
    depend on their values: a template whose files pass no variable through a filter or
    function that checks it (CHECKING) and use none beyond the required ones can be refused
    only for a missing variable. (job_svc checks every email job's variables before enqueuing
    it; rendering the welcome email for that was a twelfth of its CPU per job, py-spy.)"""
    spec = _lookup(template)
    if _checked_by_rendering(spec):
        render(template, variables)
    else:
        _require_variables(spec, variables)


def _require_variables(spec: _Template, variables: Mapping[str, str]) -> None:
    missing = [name for name in (*COMMON_VARIABLES, *spec.required) if name not in variables]
    if missing:
        raise TemplateError(f"the {spec.name} email needs the variable(s): {', '.join(missing)}")


# The filters and functions that refuse a malformed value (TemplateError).
CHECKING = frozenset({"filesize", "when", "http_url", "page_size"})


@functools.cache
def _checked_by_rendering(spec: _Template) -> bool:
    """Whether a template's files (and the layouts they extend) apply a CHECKING filter or
    function, or use a variable that is not required (an optional one may be tested, `is
    defined`, and then checked): then only rendering tells whether its variables will do."""
    environment = _environment()
    required = {*COMMON_VARIABLES, *spec.required}
    pending = [f"{spec.name}.subject.txt", f"{spec.name}.txt", f"{spec.name}.html"]
    seen: set[str] = set()
    while pending:
        file = pending.pop()
        if file in seen:
            continue
        seen.add(file)
        assert environment.loader is not None
        source = environment.loader.get_source(environment, file)[0]
        tree = environment.parse(source)
        used = {node.name for node in tree.find_all(nodes.Filter)} | {
            call.node.name
            for call in tree.find_all(nodes.Call)
            if isinstance(call.node, nodes.Name)
        }
        variables = meta.find_undeclared_variables(tree) - set(environment.globals)
        if used & CHECKING or not variables <= required:
            return True
        pending.extend(str(parent) for parent in meta.find_referenced_templates(tree) if parent)
    return False


def _lookup(template: int) -> _Template:
    if template == common_pb2.EMAIL_TEMPLATE_UNSPECIFIED:
        raise TemplateError("no email template given (EMAIL_TEMPLATE_UNSPECIFIED)")
    try:
        return _TEMPLATES[template]
    except KeyError:
        raise TemplateError(f"unknown email template {template!r}") from None


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates ship with the code: no stat of three files per email
    )
    environment.filters.update(
        filesize=_filesize,
        when=_when,
        http_url=_http_url,
        paragraphs=_paragraphs,
        line_breaks=_line_breaks,
    )
    environment.globals["page_size"] = _page_size
    return environment


def _filesize(value: str) -> str:
    """'123456' -> '120.6 KB'."""
    try:
        size = float(int(value))
    except ValueError:
        raise TemplateError(f"pdf_bytes={value!r} is not a whole number of bytes") from None
    for unit in ("bytes", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _page_size(width_points: str, height_points: str) -> str:
    """Page size in points and millimetres: '595 x 842 pt (210 x 297 mm)'."""
    try:
        width, height = float(width_points), float(height_points)
    except ValueError:
        raise TemplateError(
            f"page size {width_points!r} x {height_points!r} is not two numbers of points"
        ) from None
    millimetres_per_point = 25.4 / 72
    return (
        f"{width:.0f} x {height:.0f} pt "
        f"({width * millimetres_per_point:.0f} x {height * millimetres_per_point:.0f} mm)"
    )


def _when(value: str) -> str:
    """An ISO 8601 time as '2 January 2025 at 12:00 UTC' (naive times are taken as UTC)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TemplateError(f"expires_at={value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%B %Y} at {moment:%H:%M} UTC"


def _http_url(value: str) -> str:
    """Refuses anything but a well-formed http(s) URL (internal.urls), so that a link cannot
    run script or smuggle control characters into the email."""
    if not value.startswith(("https://", "http://")):
        raise TemplateError(f"{value!r} is not an http(s) URL")
    if (problem := url_problem(value)) is not None:
        raise TemplateError(f"{value[:200]!r} {problem}")
    return value


def _paragraphs(value: str) -> Sequence[str]:
    """Splits text on blank lines."""
    blocks = (block.strip() for block in value.replace("\r\n", "\n").split("\n\n"))
    return [block for block in blocks if block]


def _line_breaks(value: str) -> Markup:
    """Escapes text and keeps its line breaks as <br>."""
    return Markup("<br>\n").join(escape(line) for line in value.split("\n"))
