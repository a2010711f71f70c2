"""The package as a site installs it: a wheel built the way ``pip install .``
builds it, with its metadata, ``py.typed``, licence, command and test extra."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from pathlib import Path
from typing import Iterator

import pytest

from discosbackend import __version__

ROOT = Path(__file__).resolve().parent.parent
#: The environment without coverage's subprocess measurement: these runs
#: build or import a copy of the package, not the source tree's.
PLAIN_ENV = {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE")}


@pytest.fixture(name="wheel", scope="module")
def fixture_wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel pip builds from the source tree (isolated build, as for a user)."""
    where = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                           "--disable-pip-version-check", "--wheel-dir", str(where), str(ROOT)],
                          capture_output=True, text=True, timeout=300, check=False,
                          env=PLAIN_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = where.glob("discosbackend-*.whl")
    with zipfile.ZipFile(built) as wheel:
        yield wheel


def dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    return wheel.read(f"discosbackend-{__version__}.dist-info/{name}").decode()


def metadata(wheel: zipfile.ZipFile) -> Message:
    return email.message_from_string(dist_info(wheel, "METADATA"))


def test_the_wheel_says_who_where_what_and_under_which_licence(wheel: zipfile.ZipFile) -> None:
    found = metadata(wheel)
    assert found["Name"] == "discosbackend" and found["Version"] == __version__
    assert found["Author"] and found["Home-page"].startswith("https://")
    assert found["License"] == "Apache-2.0"
    assert found.get_all("Project-URL")
    assert "DISCOS" in found["Keywords"]
    classifiers = found.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert "Topic :: Scientific/Engineering :: Astronomy" in classifiers
    assert found["Requires-Python"] == ">=3.11"


def test_the_test_extra_brings_what_backend_test_cases_need(wheel: zipfile.ZipFile) -> None:
    found = metadata(wheel)
    assert found.get_all("Provides-Extra") == ["test"]
    extra = {requirement.split(">=")[0] for requirement in found.get_all("Requires-Dist")
             if requirement.endswith('extra == "test"')}
    assert extra == {"pytest", "pytest-twisted", "hypothesis"}
    runtime = {requirement.split(">=")[0] for requirement in found.get_all("Requires-Dist")
               if "extra ==" not in requirement}
    assert runtime == {"Twisted", "astropy"}


def test_the_wheel_carries_py_typed_the_licence_and_the_command(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert "discosbackend/py.typed" in names
    licence = [name for name in names if name.endswith("/LICENSE") and ".dist-info/" in name]
    assert licence and "Apache License" in wheel.read(licence[0]).decode()
    assert "discos-backend = discosbackend.cli:main" in dist_info(wheel, "entry_points.txt")
    assert "discosbackend/__main__.py" in names


def test_the_installed_wheel_imports_with_warnings_as_errors(wheel: zipfile.ZipFile,
                                                             tmp_path: Path) -> None:
    wheel.extractall(tmp_path)  # what installing it puts in site-packages
    modules = ["discosbackend", "discosbackend.server", "discosbackend.simulator",
               "discosbackend.testing", "discosbackend.client", "discosbackend.cli",
               "discosbackend.logs"]
    code = f"import {', '.join(modules)}; print(discosbackend.__file__)"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False,
                          env=PLAIN_ENV)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith(str(tmp_path))  # the wheel's copy, not the source tree's


def test_the_licence_is_the_whole_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.splitlines()) > 150


def test_pyproject_names_the_build_system_and_setup_py_stays() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    system = pyproject["build-system"]
    assert system["build-backend"] == "setuptools.build_meta"
    assert any(requirement.startswith("setuptools") for requirement in system["requires"])
    assert (ROOT / "setup.py").is_file()
