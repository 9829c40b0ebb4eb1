from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcsv.v1 import common_pb2

from internal.mail import TemplateError, check, render, required_variables

WELCOME = common_pb2.EMAIL_TEMPLATE_WELCOME
NOTIFICATION = common_pb2.EMAIL_TEMPLATE_NOTIFICATION
CONVERSION_COMPLETE = common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE

USER = {"user_name": "Ada Lovelace", "recipient": "ada@example.com"}
NOTE = {**USER, "title": "Scheduled maintenance", "body": "We will be down at noon.\n\nSorry!"}
PDF = {
    **USER,
    "pdf_url": "https://files.example.com/pdf/42.pdf?expires=1700000000&signature=ab12",
    "filename": "holiday.jpg",
}
ALL_TEMPLATES = [(WELCOME, USER), (NOTIFICATION, NOTE), (CONVERSION_COMPLETE, PDF)]


def test_welcome_greets_the_user_by_name() -> None:
    email = render(WELCOME, USER)

    assert email.subject == "Welcome to mcsv, Ada Lovelace!"
    assert email.text.startswith("Hi Ada Lovelace,\n")
    assert "Your account for ada@example.com is ready." in email.text
    assert "Hi Ada Lovelace," in email.html
    assert "Your account for <strong>ada@example.com</strong> is ready." in email.html


def test_notification_shows_title_and_body() -> None:
    email = render(NOTIFICATION, {**NOTE, "body": "First line\nsecond line\n\nNext paragraph"})

    assert email.subject == "Scheduled maintenance"
    assert "Scheduled maintenance\n\nFirst line\nsecond line\n\nNext paragraph\n" in email.text
    assert ">Scheduled maintenance</h1>" in email.html
    assert ">First line<br>\nsecond line</p>" in email.html
    assert ">Next paragraph</p>" in email.html


def test_conversion_complete_links_to_the_pdf() -> None:
    email = render(CONVERSION_COMPLETE, PDF)

    assert email.subject == "Your PDF of holiday.jpg is ready"
    assert f"Download it here:\n\n{PDF['pdf_url']}\n" in email.text
    escaped_url = PDF["pdf_url"].replace("&", "&amp;")
    assert f'<a href="{escaped_url}"' in email.html
    assert "<strong>holiday.jpg</strong>" in email.html
    # Without the optional details, none of their labels show.
    for label in ("Size", "Page size", "The link works until"):
        assert label not in email.text
        assert label not in email.html


def test_conversion_complete_shows_the_optional_details() -> None:
    details = {
        "pdf_bytes": "1536000",
        "page_width_points": "595.28",
        "page_height_points": "841.89",
        "expires_at": "2030-01-02T15:04:05.123456789+02:00",
    }
    email = render(CONVERSION_COMPLETE, {**PDF, **details})

    assert "Size: 1.5 MB\n" in email.text
    assert "Page size: 595 x 842 pt (210 x 297 mm)\n" in email.text
    assert "The link works until 2 January 2030 at 13:04 UTC." in email.text
    assert "<td>1.5 MB</td>" in email.html
    assert "<td>595 x 842 pt (210 x 297 mm)</td>" in email.html
    assert "The link works until 2 January 2030 at 13:04 UTC." in email.html


def test_html_escapes_variables_and_text_keeps_them_as_written() -> None:
    name = '<script>alert("hi")</script> & Co'
    hostile = {"user_name": name, "recipient": "x@example.com"}

    for template, variables in ALL_TEMPLATES:
        email = render(template, {**variables, **hostile, "title": name, "body": name})
        assert "<script>" not in email.html
        assert "&lt;script&gt;alert(&#34;hi&#34;)&lt;/script&gt; &amp; Co" in email.html
        assert f"Hi {name}," in email.text

    assert render(WELCOME, hostile).subject == f"Welcome to mcsv, {name}!"


def test_a_link_that_is_not_http_is_refused() -> None:
    with pytest.raises(TemplateError, match="javascript:alert"):
        render(CONVERSION_COMPLETE, {**PDF, "pdf_url": "javascript:alert(1)"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [("pdf_bytes", "lots"), ("expires_at", "tomorrow"), ("page_width_points", "A4")],
)
def test_a_malformed_optional_detail_is_a_template_error(variable: str, value: str) -> None:
    details = {"page_width_points": "595", "page_height_points": "842", variable: value}
    with pytest.raises(TemplateError, match=f"conversion_complete email: .*{value}"):
        render(CONVERSION_COMPLETE, {**PDF, **details})


def test_the_subject_stays_on_one_line() -> None:
    email = render(NOTIFICATION, {**NOTE, "title": "Hello\r\nBcc: everyone@example.com"})

    assert email.subject == "Hello Bcc: everyone@example.com"


def test_an_empty_user_name_still_reads_well() -> None:
    email = render(WELCOME, {**USER, "user_name": ""})

    assert email.subject == "Welcome to mcsv!"
    assert email.text.startswith("Hi there,\n")
    assert "Hi there," in email.html


@pytest.mark.parametrize(("template", "variables"), ALL_TEMPLATES)
def test_every_template_shares_the_layout(template: int, variables: dict[str, str]) -> None:
    email = render(template, variables)

    assert email.html.startswith("<!DOCTYPE html>")
    assert "This email was sent to ada@example.com by mcsv." in email.html
    assert email.text.endswith(
        "The mcsv team\n\n--\nThis email was sent to ada@example.com by mcsv.\n"
    )
    assert _unclosed_tags(email.html) == []


@pytest.mark.parametrize("refuse", [render, check])
@pytest.mark.parametrize(("template", "variables"), ALL_TEMPLATES)
def test_each_missing_variable_is_named(
    template: int, variables: dict[str, str], refuse: Callable[[int, dict[str, str]], object]
) -> None:
    for missing in required_variables(template):
        incomplete = {name: value for name, value in variables.items() if name != missing}
        with pytest.raises(TemplateError, match=f"needs the variable\\(s\\): {missing}$"):
            refuse(template, incomplete)


def test_required_variables_per_template() -> None:
    assert required_variables(WELCOME) == ("user_name", "recipient")
    assert required_variables(NOTIFICATION) == ("user_name", "recipient", "title", "body")
    assert required_variables(CONVERSION_COMPLETE) == (
        "user_name",
        "recipient",
        "pdf_url",
        "filename",
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (common_pb2.EMAIL_TEMPLATE_UNSPECIFIED, "no email template given"),
        (99, "unknown email template 99"),
    ],
)
def test_an_unknown_template_is_a_template_error(template: int, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(template, USER)


# Every variable any template reads, and values that some filter refuses.
_NAMES = ["user_name", "recipient", "title", "body", "pdf_url", "filename", "pdf_bytes",
          "expires_at", "page_width_points", "page_height_points", "unused"]  # fmt: skip
_VALUES = st.one_of(
    st.sampled_from(["", "595", "842", "2025-01-02T12:00:00Z", "tomorrow", "lots", "A4",
                     "https://files.example.com/a.pdf", "javascript:alert(1)", "a\r\nb"]),
    st.text(max_size=30),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    template=st.sampled_from([WELCOME, NOTIFICATION, CONVERSION_COMPLETE]),
    variables=st.dictionaries(st.sampled_from(_NAMES), _VALUES),
)
def test_check_refuses_exactly_what_rendering_refuses(
    template: int, variables: dict[str, str]
) -> None:
    try:
        render(template, variables)
    except TemplateError as refused:
        with pytest.raises(TemplateError) as checked:
            check(template, variables)
        assert str(checked.value) == str(refused)
    else:
        check(template, variables)


def test_check_refuses_a_malformed_link_and_an_unknown_template() -> None:
    with pytest.raises(TemplateError, match="javascript:alert"):
        check(CONVERSION_COMPLETE, {**PDF, "pdf_url": "javascript:alert(1)"})
    with pytest.raises(TemplateError, match="unknown email template 99"):
        check(99, USER)


class _TagBalance(HTMLParser):
    VOID = frozenset({"meta", "br", "img", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()


def _unclosed_tags(html: str) -> list[str]:
    parser = _TagBalance()
    parser.feed(html)
    parser.close()
    return parser.open
