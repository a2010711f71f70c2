"""JUnit XML reports for CI: what ``check`` and ``replay`` write with ``--junit-xml``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence
from xml.etree import ElementTree

from discosbackend.cli import CommandLineError
from discosbackend.testing.runner import ABORTS, ERROR, FAILED, SKIPPED

__all__ = ["Case", "junit_document", "write_junit"]

_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Case:
    """One test case of a report.

    ``outcome`` is one of :mod:`discosbackend.testing.runner`'s outcomes;
    a failure has a ``kind`` (its exception's name), a short ``message`` and
    the full ``text``; an error and a skip have a ``message``.
    """

    name: str
    outcome: str
    message: str = ""
    text: str = ""
    kind: str = "AssertionError"
    seconds: float = 0.0


def _xml_text(text: str) -> str:
    return _XML_UNSAFE.sub("?", text)


def junit_document(suite: str, classname: str,
                   cases: Sequence[Case]) -> ElementTree.ElementTree:
    """The cases as a JUnit XML document: one ``testsuite`` named ``suite``."""
    counts = {outcome: sum(1 for case in cases if case.outcome == outcome)
              for outcome in (FAILED, ABORTS, ERROR, SKIPPED)}
    totals = {"tests": str(len(cases)), "failures": str(counts[FAILED] + counts[ABORTS]),
              "errors": str(counts[ERROR]), "skipped": str(counts[SKIPPED]),
              "time": f"{sum(case.seconds for case in cases):.3f}"}
    root = ElementTree.Element("testsuites", totals)
    element = ElementTree.SubElement(root, "testsuite", {"name": _xml_text(suite), **totals})
    for case in cases:
        entry = ElementTree.SubElement(element, "testcase", {
            "classname": classname, "name": _xml_text(case.name),
            "time": f"{case.seconds:.3f}"})
        if case.outcome in (FAILED, ABORTS):
            failure = ElementTree.SubElement(entry, "failure", {
                "type": case.kind, "message": _xml_text(case.message)})
            failure.text = _xml_text(case.text)
        elif case.outcome == ERROR:
            error = ElementTree.SubElement(entry, "error", {"message": _xml_text(case.message)})
            error.text = _xml_text(case.message)
        elif case.outcome == SKIPPED:
            ElementTree.SubElement(entry, "skipped", {"message": _xml_text(case.message)})
    return ElementTree.ElementTree(root)


def write_junit(document: ElementTree.ElementTree, path: str) -> None:
    """Write ``document`` to ``path``; :class:`CommandLineError` if it cannot be written."""
    try:
        document.write(path, encoding="utf-8", xml_declaration=True)
    except OSError as error:
        raise CommandLineError(f"cannot write {path}: {error.strerror or error}") from None
