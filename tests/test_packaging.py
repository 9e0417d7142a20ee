"""What the package declares about the Python it needs."""

import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]


def test_python_versions_with_tar_extraction_filters_only():
    """`tarfile`'s extraction filters (`filter='data'`, used by `lossbench fetch`) arrived in 3.11.4."""
    spec = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    assert "3.11.3" not in spec and "3.11.0" not in spec
    assert "3.11.4" in spec and "3.12.7" in spec
