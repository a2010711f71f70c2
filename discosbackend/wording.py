"""How the library's messages word a count: ``1 check``, ``2 checks``."""

__all__ = ["counted"]


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1.

    The plural is ``noun + "s"`` unless given (``counted(2, "reply", "replies")``).
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
