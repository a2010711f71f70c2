"""Installs the discosbackend package and the ``discos-backend`` command."""
from pathlib import Path
import re

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines
            if line.strip() and not line.startswith(("#", "-"))]


def _version() -> str:
    text = (HERE / "discosbackend" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


setup(
    name="discosbackend",
    version=_version(),
    description="Server, simulator, client and conformance tests for the "
                "DISCOS backend protocol",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["discosbackend", "discosbackend.*"]),
    package_data={"discosbackend": ["*.toml"]},
    install_requires=_requirements(),
    entry_points={
        "console_scripts": ["discos-backend = discosbackend.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Twisted",
        "Topic :: Scientific/Engineering :: Astronomy",
    ],
)
