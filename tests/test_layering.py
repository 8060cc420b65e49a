"""The layering contract, checked on the source: every import of every module, read with ``ast`` (imports
inside functions and ``if TYPE_CHECKING`` blocks count too, and so does ``importlib.import_module("…")``
with a literal name).

- ``consumers``, ``producers`` and ``schemas`` never import the operator tools, the CLI or the web app;
- ``assethooks.operator`` never imports ``consumers``;
- among ``assethooks``, ``consumers``, ``producers`` and ``schemas`` only the ``assethooks.kafka`` package
  imports ``confluent_kafka`` (tests and benchmarks may drive the broker directly).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("assethooks", "consumers", "producers", "schemas")


@dataclass(frozen=True)
class Rule:
    """Modules under one of ``importers`` must not import a module under one of ``forbidden``, unless the
    importer is under one of ``allowed``."""

    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    why: str
    allowed: tuple[str, ...] = ()


RULES = (
    Rule(
        ("consumers", "producers", "schemas"),
        ("assethooks.operator", "assethooks.cli", "assethooks.web"),
        "the consumer groups, producers and schemas sit below the operator tools, the CLI and the web app",
    ),
    Rule(
        ("assethooks.operator",),
        ("consumers",),
        "the operator tools share what they need with the consumers through assethooks.kafka or schemas",
    ),
    Rule(
        PACKAGES,
        ("confluent_kafka",),
        "assethooks.kafka is the one Kafka seam",
        allowed=("assethooks.kafka",),
    ),
)


@dataclass(frozen=True)
class Import:
    """One module name an import statement brings in, and where."""

    module: str
    line: int


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def module_name(path: Path) -> str:
    """The dotted name of the module at ``path`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every module ``source`` (the text of ``module``) imports, anywhere in it. ``from a import b`` yields
    ``a`` and ``a.b`` (``b`` may be a module); relative imports are resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(base, node.lineno)
            for alias in node.names:
                if alias.name != "*":
                    yield Import(f"{base}.{alias.name}", node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(node.args[0].value, node.lineno)


def violations(source: str, module: str, *, is_package: bool = False, path: str | None = None) -> list[str]:
    """One line per import of ``module`` that breaks a rule: the module, the line, the import and why."""
    where = path or module
    found = []
    for rule in RULES:
        if not _under(module, rule.importers) or _under(module, rule.allowed):
            continue
        reported: set[tuple[str, int]] = set()
        for imported in imports_of(source, module, is_package=is_package):
            if not _under(imported.module, rule.forbidden):
                continue
            if any((name, imported.line) in reported for name in _ancestors(imported.module)):
                continue  # ``from a import b`` yields a and a.b: a is reported already
            reported.add((imported.module, imported.line))
            found.append(f"{where}:{imported.line} ({module}) imports {imported.module}: {rule.why}")
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: end + 1]) for end in range(len(parts))]


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_the_modules_keep_the_layering() -> None:
    """No module of the four packages breaks a rule."""
    paths = _modules()
    assert len(paths) > 50  # the walk found the packages
    broken = [
        line
        for path in paths
        for line in violations(
            path.read_text(),
            module_name(path),
            is_package=path.name == "__init__.py",
            path=str(path.relative_to(ROOT)),
        )
    ]
    assert not broken, "layering broken:\n" + "\n".join(broken)


def test_only_the_kafka_package_imports_confluent_kafka() -> None:
    """The seam exists and is used: assethooks.kafka imports confluent_kafka, and holds the protocols."""
    seam = [path for path in _modules() if _under(module_name(path), ("assethooks.kafka",))]
    assert any(
        _under(imported.module, ("confluent_kafka",))
        for path in seam
        for imported in imports_of(path.read_text(), module_name(path))
    )


@pytest.mark.parametrize(
    ("module", "source", "offending"),
    [
        (
            "consumers.service",
            "from assethooks.operator.records import scan\n",
            "assethooks.operator.records",
        ),
        ("consumers.service", "from assethooks import operator\n", "assethooks.operator"),
        ("producers.events", "import assethooks.cli.base as base\n", "assethooks.cli.base"),
        ("schemas.tasks", "def f():\n    from assethooks.web import api\n", "assethooks.web"),
        (
            "consumers.runtime",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from confluent_kafka import Message\n",
            "confluent_kafka",
        ),
        (
            "assethooks.operator.replay",
            "from consumers.dispatcher import source_of\n",
            "consumers.dispatcher",
        ),
        ("assethooks.operator.replay", "from .. import kafka\nimport consumers\n", "consumers"),
        (
            "assethooks.cli.run",
            "import importlib\nimportlib.import_module('confluent_kafka')\n",
            "confluent_kafka",
        ),
        ("assethooks.store.db", "from confluent_kafka.admin import AdminClient\n", "confluent_kafka.admin"),
    ],
)
def test_a_broken_rule_is_reported(module: str, source: str, offending: str) -> None:
    """Each kind of import that breaks a rule is found, and the message names the module and the import."""
    found = violations(source, module)
    assert len(found) == 1, found
    assert f"({module}) imports {offending}" in found[0]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("assethooks.kafka.reading", "from confluent_kafka import Consumer\n"),
        ("assethooks.kafka", "from confluent_kafka import TopicPartition\n"),
        ("assethooks.cli.run", "from consumers.service import serve\n"),
        (
            "assethooks.operator.replay",
            "from assethooks.kafka import scan\nfrom schemas.tasks import key_bytes\n",
        ),
        ("consumers.service", "from assethooks.kafka import MetadataReader\n"),
        ("assethooks.kafka.records", "from . import config\nfrom .config import client_config\n"),
    ],
)
def test_an_allowed_import_is_not_reported(module: str, source: str) -> None:
    """Imports the contract allows pass."""
    assert violations(source, module, is_package=module == "assethooks.kafka") == []
