"""Installs the discosbackend package and the ``discos-backend`` command.

The metadata lives here, once; ``pyproject.toml`` only names the build
system.  ``setup.py`` stays because the version and the requirements are
read from the source tree (``discosbackend/__init__.py``,
``requirements.txt``).
"""
from pathlib import Path
import re

from setuptools import find_packages, setup

HERE = Path(__file__).parent
#: Who answers for the package (shown by ``pip show``).
AUTHOR = "discosbackend maintainers"
#: Where the DISCOS project, which this package serves, lives.
DISCOS_URL = "https://github.com/discos/discos"
#: What the extra ``discosbackend[test]`` installs: what a backend author
#: needs to run ``BackendTestCase`` subclasses under pytest.
TEST_EXTRA = ["pytest>=8.0", "pytest-twisted>=1.14", "hypothesis>=6.100"]


def _requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines
            if line.strip() and not line.startswith(("#", "-"))]


def _version() -> str:
    text = (HERE / "discosbackend" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    assert found is not None, "discosbackend/__init__.py has no __version__"
    return found.group(1)


setup(
    name="discosbackend",
    version=_version(),
    description="Server, simulator, client and conformance tests for the "
                "DISCOS backend protocol",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author=AUTHOR,
    url=DISCOS_URL,
    project_urls={
        "DISCOS": DISCOS_URL,
        "DISCOS documentation": "https://github.com/discos/doc",
    },
    license="Apache-2.0",
    license_files=["LICENSE"],
    keywords=["DISCOS", "radio telescope", "backend", "spectrometer", "total power",
              "protocol", "simulator", "Twisted", "SRT", "Medicina", "Noto"],
    python_requires=">=3.11",
    packages=find_packages(include=["discosbackend", "discosbackend.*"]),
    package_data={"discosbackend": ["*.toml", "py.typed"]},
    install_requires=_requirements(),
    extras_require={"test": TEST_EXTRA},
    entry_points={
        "console_scripts": ["discos-backend = discosbackend.cli:main"],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Environment :: Console",
        "Framework :: Twisted",
        "Intended Audience :: Science/Research",
        "Intended Audience :: Developers",
        "Operating System :: POSIX",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Astronomy",
        "Topic :: Software Development :: Testing",
        "Topic :: System :: Networking",
        "Typing :: Typed",
    ],
)
