"""The shape of the code: imports only go down the layers, and nothing leans on a
dependency's private parts.

The layers and what each may import are import-linter contracts in ``setup.cfg``
(``[importlinter]``); ``lint-imports`` checks them here, so a new cycle or an upward import
fails the suite.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("bridge/**/*.py"), *ROOT.glob("schemas/**/*.py")])
OUR_PACKAGES = {"bridge", "schemas", "__future__"}

# Names that belong to a dependency's insides (what the bridge once used, and must not
# again): redis-py's lock internals, marshmallow's field machinery, gunicorn's and RQ's
# worker internals.
PRIVATE_NAMES = {
    "LUA_RELEASE_SCRIPT": "redis-py's lock script",
    "LUA_EXTEND_SCRIPT": "redis-py's lock script",
    "LUA_REACQUIRE_SCRIPT": "redis-py's lock script",
    "do_acquire": "redis-py's Lock internals",
    "do_reacquire": "redis-py's Lock internals",
    "do_release": "redis-py's Lock internals",
    "do_extend": "redis-py's Lock internals",
    "load_fields": "marshmallow's Schema internals",
    "dump_fields": "marshmallow's Schema internals",
    "_bind_field": "marshmallow's Schema internals",
    "_invoke_field_validators": "marshmallow's Schema internals",
    "enqueue_req": "gunicorn's gthread worker internals",
    "accept": "gunicorn's gthread worker internals",
    "murder_keepalived": "gunicorn's gthread worker internals",
    "prepare_job_execution": "RQ's worker internals",
}
# Names too common to be looked for outside a subclass of a watched base.
GENERIC_NAMES = {"accept"}
# Bases whose subclasses may only override public, documented hooks.
WATCHED_BASES = {"Lock", "ThreadWorker", "SyncWorker", "Schema", "Worker", "SimpleWorker"}


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / "setup.cfg")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    assert "KEPT" in result.stdout


def _external_imports(tree: ast.Module) -> list[tuple[int, str, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top in OUR_PACKAGES:
                continue
            found.extend((node.lineno, node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in OUR_PACKAGES:
                    found.append((node.lineno, alias.name, ""))
    return found


def private_uses(source: str) -> list[str]:
    """Each use in ``source`` of a dependency's private module or name, or of its insides."""
    tree = ast.parse(source)
    problems = []
    for line, module, name in _external_imports(tree):
        private_module = any(part.startswith("_") for part in module.split("."))
        if private_module or (name.startswith("_") and not name.startswith("__")):
            problems.append(f"line {line}: imports {name or module} from {module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_NAMES.keys() - GENERIC_NAMES:
            problems.append(f"line {node.lineno}: .{node.attr} ({PRIVATE_NAMES[node.attr]})")
        if isinstance(node, ast.ClassDef):
            bases = {getattr(b, "attr", getattr(b, "id", "")) for b in node.bases}
            if not bases & WATCHED_BASES:
                continue
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name in PRIVATE_NAMES:
                    problems.append(
                        f"line {item.lineno}: {node.name}.{item.name} overrides "
                        f"{PRIVATE_NAMES[item.name]}"
                    )
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_of_a_dependency_is_used(path: Path):
    problems = private_uses(path.read_text())
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_guard_sees_what_it_guards_against():
    """The scan finds each kind of use it forbids, so finding none means something."""
    problems = private_uses(
        "from redis.lock import Lock\n"
        "from marshmallow.schema import _private\n"
        "class L(Lock):\n"
        "    def do_acquire(self, token):\n"
        "        return self.LUA_RELEASE_SCRIPT\n"
    )
    assert len(problems) == 3, problems
    assert any("_private" in p for p in problems)
    assert any("L.do_acquire overrides" in p for p in problems)
    assert any("LUA_RELEASE_SCRIPT" in p for p in problems)
