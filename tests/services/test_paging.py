"""Page tokens: what next_page_token issues reads back; anything else is invalid_argument
naming page_token (never an exception the database raises later, such as OverflowError)."""

from __future__ import annotations

import base64

import pytest
from mcsv.twirp import ErrorCode, TwirpError

from internal.services.common import paging


@pytest.mark.parametrize("offset", [0, 1, 50, 999_999, paging.MAX_TOKEN_VALUE])
def test_issued_tokens_read_back(offset: int) -> None:
    token = paging.next_page_token(offset, 0, more=True)
    assert paging.page_offset(token) == offset
    assert paging.page_position(paging.position_token(offset, more=True)) == offset


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        _b64(str(paging.MAX_TOKEN_VALUE + 1)),
        _b64("9" * 5000),  # more digits than int() takes
        _b64("-3"),
        _b64("+3"),
        _b64("0x10"),
        _b64("1_000"),
        _b64("010"),
        _b64("3\n"),
        _b64("\u0663"),
        "MTA",  # "10" without padding
        "MTA=\n",
        "%%%",
        "\u00e9",
        "A" * 10_000,
    ],
)
def test_any_other_token_is_invalid_argument_naming_page_token(token: str) -> None:
    with pytest.raises(TwirpError) as refused:
        paging.page_offset(token)
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    assert refused.value.meta == {"argument": "page_token"}
