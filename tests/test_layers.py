"""The layering of the design card, checked on the source: each layer imports only the
layers before it (signatures <- programs <- backends <- running <- optimizers <- cli),
lazily imported modules inside functions included."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["signatures", "programs", "backends", "running", "optimizers", "cli"]


def imported_layers(path: Path) -> set[str]:
    """The gem_synth layers a module imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "gem_synth" and len(parts) > 1 and parts[1] in LAYERS:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_upward(layer):
    rank = LAYERS.index(layer)
    upward = {f"{path.relative_to(ROOT)} imports {other}"
              for path in (ROOT / layer).glob("*.py")
              for other in imported_layers(path) if LAYERS.index(other) > rank}
    assert not upward, sorted(upward)
