"""The house as the README draws it: every import in wxy_hw/ points down the floor table, and none forms a cycle.

Imports are read from the source (AST), so the test sees imports inside functions too, and string
targets of ``importlib.import_module`` (an import the import graph would otherwise miss).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "wxy_hw"


def floor_table() -> dict[str, tuple[int, int]]:
    """{room: (floor, highest floor it may import)} from the README's Layout table (a room: a folder 'x/' or a
    module 'x.py', named in backticks; "may import": '1–N', 'everything below', or outside packages only)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rooms: dict[str, tuple[int, int]] = {}
    for line in section.splitlines():
        row = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|[^|]*\|([^|]*)\|", line)
        if row:
            floor, may = int(row.group(1)), row.group(3)
            top = re.search(r"1\s*[–-]\s*(\d+)", may)
            limit = int(top.group(1)) if top else floor - 1 if "everything below" in may else \
                1 if re.search(r"\b1\b", may) else 0
            for name in re.findall(r"`([\w.]+/?)`", row.group(2)):
                rooms[name.rstrip("/").removesuffix(".py")] = (floor, limit)
    return rooms


def modules() -> dict[str, Path]:
    """{dotted module name: file} of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path) -> set[str]:
    """The wxy_hw modules ``name`` imports, resolved to dotted names (relative imports and importlib strings too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def resolve(target: str, level: int) -> str:
        if level == 0:
            return target
        base = package.split(".")[: len(package.split(".")) - (level - 1)]
        return ".".join(base + ([target] if target else []))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module or "", node.level)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            arg = node.args[0] if node.args else None
            text = arg.value if isinstance(arg, ast.Constant) else \
                "".join(v.value for v in arg.values if isinstance(v, ast.Constant)) if isinstance(arg, ast.JoinedStr) \
                else None
            if text:
                level = len(text) - len(text.lstrip("."))
                found.add(resolve(text.lstrip(".").rstrip("."), level))
    known = modules()
    return {m for m in found if m in known and m != name and m.startswith("wxy_hw")}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_floor_table_names_every_room():
    rooms = floor_table()
    present = {room(m) for m in modules()} - {""}
    missing = sorted(present - set(rooms))  # the device files are data in the top-level devices/, not a room
    assert not missing, f"README's Layout table does not place: {missing}"


def test_every_import_points_down_the_floor_table():
    """No module imports a floor above what its row's "may import" allows (its own room aside)."""
    rooms, known = floor_table(), modules()
    upward = []
    for name, path in known.items():
        if room(name) not in rooms:
            continue
        floor, limit = rooms[room(name)]
        for target in imports_of(name, path):
            if room(target) == room(name) or room(target) not in rooms:
                continue
            there = rooms[room(target)][0]
            if there > limit:
                upward.append(f"{name} (floor {floor}, may import 1-{limit}) imports {target} (floor {there})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_rooms():
    """Rooms (a folder or a top-level module) form a DAG: no room imports one that imports it back."""
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        graph.setdefault(room(name), set()).update(room(t) for t in imports_of(name, path) if room(t) != room(name))
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(trail + [node, nxt])
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_reader_sees_relative_and_importlib_imports():
    mods = modules()
    assert "wxy_hw.utils" in imports_of("wxy_hw.run_dir", mods["wxy_hw.run_dir"])
    assert "wxy_hw.cli.train" in imports_of("wxy_hw.cli.__main__", mods["wxy_hw.cli.__main__"]) or \
        any(t.startswith("wxy_hw.cli") for t in imports_of("wxy_hw.cli.__main__", mods["wxy_hw.cli.__main__"]))
