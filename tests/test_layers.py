"""The layering is checked, not described: engine never imports api; engine, api
and bench have no import cycles; every part of engine._core uses only names
defined in common.pxi, in itself, or in a part it lists on its "Uses:" line and
that _core.pyx includes before it; sans-I/O parts use no I/O."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

EXT = ROOT / "ext"
PACKAGES = ("engine", "api", "bench")


# -- Python imports ------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs (``from a import b`` counts as ``a`` and
    ``a.b``); imports for type checking only do not count."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def python_modules(package: str) -> dict[str, Path]:
    return {module_name(path): path for path in (ROOT / package).rglob("*.py")}


def test_engine_never_imports_api() -> None:
    for name, path in python_modules("engine").items():
        wrong = sorted(i for i in imports_of(path) if i == "api" or i.startswith("api."))
        assert not wrong, f"{name} imports {wrong}: api sits above the engine"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    modules = {name: path for p in PACKAGES for name, path in python_modules(p).items()}
    graph = {
        name: {i for i in imports_of(path) if i in modules and i != name} for name, path in modules.items()
    }
    for start in (name for name in modules if name.split(".")[0] == package):
        path = _cycle_from(start, graph)
        assert path is None, "import cycle: " + " -> ".join(path or [])


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, trail = stack.pop()
        for follower in graph[node]:
            if follower == start:
                return [*trail, start]
            if follower not in seen:
                seen.add(follower)
                stack.append((follower, [*trail, follower]))
    return None


# -- the parts of engine._core ---------------------------------------------------

IO_NAMES = {"asyncio", "socket", "writev", "WSTransport", "WSListener", "WSFrame", "WSMsgType"}
_COMMENT_OR_STRING = re.compile(
    r'#[^\n]*|[rbfcu]{0,2}"""[\s\S]*?"""|[rbfcu]{0,2}\'\'\'[\s\S]*?\'\'\''
    r'|(?P<f>f)?[rbcu]?"(?:\\.|[^"\\\n])*"|(?P<g>f)?[rbcu]?\'(?:\\.|[^\'\\\n])*\''
)
_NAME = re.compile(r"(?<![.\w])[A-Za-z_]\w*")


def included_parts() -> list[str]:
    return re.findall(r'^include "([^"]+)"', (EXT / "_core.pyx").read_text(), re.M)


def declared_uses(text: str) -> set[str]:
    if text is COMMON_TEXT:
        return set()  # common.pxi declares; it uses no other part
    match = re.search(r"^# Uses: (.*(?:\n#\s{6,}.*)*)", text, re.M)
    assert match, 'a part says what it uses on a "# Uses:" line'
    return {use.strip() for use in re.sub(r"\n#\s+", " ", match.group(1)).split(",")}


def code_only(text: str) -> str:
    """The text without comments and string literals (f-string fields kept)."""

    def keep(match: re.Match[str]) -> str:
        if match.group("f") or match.group("g"):
            return " ".join(re.findall(r"\{([^{}]*)\}", match.group(0)))
        return " "

    return _COMMENT_OR_STRING.sub(keep, text)


def defined_names(text: str) -> set[str]:
    """Module-level names a part defines, cimports or imports."""
    names: set[str] = set()
    lines = code_only(text).splitlines()
    for number, line in enumerate(lines):
        if not line or line[0].isspace():
            continue
        line = line.rstrip()
        if match := re.match(r"(?:from \S+ )?c?import (.+)", line):
            for item in match.group(1).split(","):
                names.add(item.split(" as ")[-1].strip().split(".")[0])
        elif match := re.match(r"(?:cdef )?(?:class|struct) (\w+)|(?:async )?def (\w+)", line):
            names.add(match.group(1) or match.group(2))
        elif match := re.match(r"cdef enum ?(\w*)", line):
            if match.group(1):
                names.add(match.group(1))
            for member in lines[number + 1 :]:
                if member.strip() and not member[0].isspace():
                    break
                if found := re.match(r"\s+(\w+)", member):
                    names.add(found.group(1))
        elif re.match(r"c?p?def ", line):
            head = line.split("=")[0]
            if ("=" not in line and (found := re.search(r"(\w+)\(", line))) or (
                "(" in head and (found := re.search(r"(\w+)\(", head))
            ):
                names.add(found.group(1))
            else:
                names.add(re.findall(r"\w+", head.split("[")[0])[-1])
        elif match := re.match(r"(\w+) = ", line):
            names.add(match.group(1))
    return names


def used_names(text: str) -> set[str]:
    return set(_NAME.findall(code_only(text)))


PARTS = included_parts()
COMMON_TEXT = (EXT / "common.pxi").read_text()


def test_every_part_of_ext_is_included_once() -> None:
    on_disk = sorted(str(path.relative_to(EXT)) for path in EXT.rglob("*.pxi"))
    assert sorted(PARTS) == on_disk


@pytest.mark.parametrize("part", PARTS)
def test_a_part_uses_only_what_it_declares(part: str) -> None:
    texts = {name: (EXT / name).read_text() for name in PARTS}
    texts["common.pxi"] = COMMON_TEXT
    owner: dict[str, str] = {}
    for name in PARTS:
        for defined in defined_names(texts[name]):
            assert defined not in owner or owner[defined] == name, (
                f"{defined} is defined in {owner.get(defined)} and {name}"
            )
            owner[defined] = name
    text = texts[part]
    uses = declared_uses(text)
    earlier = set(PARTS[: PARTS.index(part)])
    assert uses <= earlier, f"{part} uses parts included after it: {sorted(uses - earlier)}"
    own = defined_names(text)
    needed = {owner[name] for name in used_names(text) - own if name in owner} - {part}
    assert needed <= uses | {"common.pxi"}, (
        f"{part} uses names of {sorted(needed - uses)} without listing them on its Uses line: "
        + ", ".join(sorted(n for n in used_names(text) - own if owner.get(n) in needed - uses))
    )
    assert uses - {"common.pxi"} <= needed, f"{part} lists parts it does not use: {sorted(uses - needed)}"


@pytest.mark.parametrize("part", [part for part in PARTS if part.startswith("sansio/")])
def test_sans_io_parts_touch_no_transport(part: str) -> None:
    touched = used_names((EXT / part).read_text()) & IO_NAMES
    assert not touched, f"{part} is sans-I/O but uses {sorted(touched)}"
