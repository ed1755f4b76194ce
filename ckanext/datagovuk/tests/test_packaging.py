"""The wheel built from pyproject.toml: what it declares and what it ships.

Built with ``pip wheel --no-deps`` from a copy of the source tree, so the
build leaves nothing in the checkout; pip fetches the build backend named
in pyproject.toml, as it would for a site.
"""
from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ckanext.datagovuk.tests.conftest import ROOT

PACKAGE = pathlib.Path(ROOT, "ckanext", "datagovuk")
# Files the installed package reads at run time, beside its modules.
PACKAGE_DATA_SUFFIXES = (".sql", ".sh", ".yaml", ".in")
# CKAN's own requirements bring psycopg2 (or a site's psycopg2-binary):
# declaring either would install the module twice.
PROVIDED_BY_CKAN = {"psycopg2"}
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build",
                                    "*.egg-info", "bench-results", "*.dump")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_COPIED)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "--wheel-dir", str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    [built] = (work / "dist").glob("ckanext_datagovuk-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def metadata(wheel: zipfile.ZipFile):
    [name] = [name for name in wheel.namelist()
              if name.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(name).decode())


def requirements(wheel: zipfile.ZipFile) -> dict[str, Requirement]:
    found = [Requirement(text)
             for text in metadata(wheel).get_all("Requires-Dist") or []]
    return {canonicalize_name(requirement.name): requirement
            for requirement in found if not requirement.marker}


def runtime_imports() -> set[str]:
    """Top-level modules the package's runtime code imports: tests and the
    dev tooling under testing/ left out."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        if {"tests", "testing"} & set(path.relative_to(PACKAGE).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"ckanext"}


def test_wheel_declares_the_runtime_dependencies_with_lower_bounds_only(wheel):
    declared = requirements(wheel)
    for name in ("ckan", "pastescript", "click", "sqlalchemy", "alembic"):
        assert name in declared, (name, sorted(declared))
    assert str(declared["ckan"].specifier) == ">=2.12"
    for name, requirement in declared.items():
        bounds = {spec.operator for spec in requirement.specifier}
        if name == "setuptools":
            assert str(requirement.specifier) == "<82"
        else:
            assert bounds <= {">="}, requirement


def test_every_module_the_code_imports_is_declared(wheel):
    declared = set(requirements(wheel))
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(runtime_imports() - PROVIDED_BY_CKAN):
        owners = {canonicalize_name(name)
                  for name in distributions.get(module, [])}
        assert owners & declared, (module, owners, sorted(declared))


def test_no_psycopg2_distribution_is_declared(wheel):
    assert not {"psycopg2", "psycopg2-binary"} & set(requirements(wheel))


def test_wheel_registers_the_three_entry_points(wheel):
    [name] = [name for name in wheel.namelist()
              if name.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(name).decode()
    for group, target in (
            ("ckan.plugins", "ckanext.datagovuk.plugin:DatagovukPlugin"),
            ("ckan.click_command", "ckanext.datagovuk.cli:datagovuk"),
            ("paste.global_paster_command",
             "ckanext.datagovuk.paster:DatagovukCommand")):
        section = text.split(f"[{group}]", 1)[1].split("[", 1)[0]
        assert f"datagovuk = {target}" in section, text


def test_wheel_ships_the_package_data(wheel):
    in_source = {str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*")
                 if path.suffix in PACKAGE_DATA_SUFFIXES
                 and "tests" not in path.relative_to(PACKAGE).parts}
    in_wheel = {name for name in wheel.namelist()
                if name.endswith(PACKAGE_DATA_SUFFIXES)}
    assert "ckanext/datagovuk/migrations/001_bytemark_to_govuk.sql" in in_wheel
    assert "ckanext/datagovuk/config_declaration.yaml" in in_wheel
    assert in_wheel >= in_source, sorted(in_source - in_wheel)
