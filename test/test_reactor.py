"""discosbackend.reactor: the global reactor, found lazily."""

from __future__ import annotations

from twisted.internet import reactor, task

from discosbackend.reactor import global_reactor, or_global


def test_or_global_returns_the_reactor_given():
    clock = task.Clock()
    assert or_global(clock) is clock


def test_or_global_keeps_a_falsy_reactor():
    falsy: list[object] = []  # only None means "the global one"
    assert or_global(falsy) is falsy


def test_or_global_none_is_the_installed_global_reactor():
    assert or_global(None) is reactor
    assert global_reactor() is reactor
