"""discosbackend.wording: counts in messages."""

import pytest

from discosbackend.wording import counted


@pytest.mark.parametrize("count, noun, plural, text", [
    (0, "check", None, "0 checks"),
    (1, "check", None, "1 check"),
    (2, "check", None, "2 checks"),
    (1, "reply", "replies", "1 reply"),
    (3, "reply", "replies", "3 replies"),
])
def test_counted(count: int, noun: str, plural: str | None, text: str) -> None:
    assert counted(count, noun, plural) == text
