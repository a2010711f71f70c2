"""The one way the library finds Twisted's global reactor: lazily.

Importing ``twisted.internet.reactor`` installs the default reactor, so the
library never does it at import time: an application (or pytest-twisted)
may install another reactor first.  Everything that takes an optional
``reactor`` or ``clock`` argument resolves ``None`` through :func:`or_global`.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["global_reactor", "or_global"]

T = TypeVar("T")


def global_reactor() -> Any:
    """Twisted's global reactor, installing the default one if none is yet."""
    from twisted.internet import reactor
    return reactor


def or_global(reactor: T | None) -> T:
    """``reactor`` itself, or the global reactor when it is ``None``."""
    return reactor if reactor is not None else global_reactor()
