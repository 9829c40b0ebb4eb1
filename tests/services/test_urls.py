"""internal.urls: what a URL carried by a request must look like. The usual URL (printable
ASCII) takes the quick path; everything else is refused with its reason."""

from __future__ import annotations

import pytest

from internal.urls import MAX_URL_LENGTH, character_problem, url_problem

PRESIGNED = (
    "http://127.0.0.1:8081/storage/uploads/0123456789abcdef/a.png"
    "?method=GET&expires=1790000000&content_type=&signature=" + "ab" * 32
)


def test_a_presigned_url_is_well_formed() -> None:
    assert character_problem(PRESIGNED) is None
    assert url_problem(PRESIGNED) is None
    assert url_problem("https://files.example.com:8443/x%20y?a=b#c") is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://a/x\r\nX-Injected: 1", "the control character U+000D at position 10"),
        ("http://a/\tx", "the control character U+0009 at position 9"),
        ("http://a/\x7f", "the control character U+007F at position 9"),
        ("http://a/\u0085x", "the control character U+0085 at position 9"),
        ("http://a/é", "the non-ASCII character U+00E9 at position 9"),
        ("http://a/b c", "a space at position 10"),
        (" http://a/", "a space at position 0"),
        ("http://[::1/x", "is not a URL"),
        ("http://127.0.0.1:8081:99999/x", "is not a URL"),
        ("javascript:alert(1)", "must be an http or https URL"),
        ("http:///x", "has no host"),
        ("http://a/" + "x" * MAX_URL_LENGTH, f"is longer than {MAX_URL_LENGTH} characters"),
    ],
)
def test_a_malformed_url_is_refused_with_its_reason(url: str, reason: str) -> None:
    problem = url_problem(url)
    assert problem is not None and reason in problem, problem
