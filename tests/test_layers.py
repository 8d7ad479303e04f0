"""The layers of docs/design.md hold: no module imports a higher layer (not even inside a function), no import
circles, and every import inside a function says why it is not at the top. The checker is tests/support/layers.py;
the last tests show it fails on a deliberately added upward import and circle."""
from __future__ import annotations

import shutil
from pathlib import Path

import layers

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_module_has_a_layer():
    for module in layers.modules(SRC):
        layers.layer(module)  # raises for a module no layer claims


def test_no_module_imports_a_higher_layer():
    assert layers.upward_imports(SRC) == []


def test_no_import_circles():
    assert layers.cycles(SRC) == []


def test_the_write_path_never_imports_readers_runtimes_or_the_facade():
    write_path = {"stores", "export", "capture"}
    g = layers.graph(SRC)
    for module, targets in g.items():
        if layers.layer(module) in write_path:
            above = {t for t in targets if layers.layer(t) not in write_path | {"foundation"}}
            assert not above, f"{module} imports {sorted(above)}"


def test_local_imports_say_why():
    assert layers.unexplained_local_imports(SRC) == []


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(SRC / "omegaml_otel", tmp_path / "omegaml_otel",
                    ignore=shutil.ignore_patterns("__pycache__", "*.sql"))
    return tmp_path


def test_the_check_catches_an_upward_import_inside_a_function(tmp_path):
    src = _copy(tmp_path)
    base = src / "omegaml_otel" / "_internal" / "stores" / "base.py"
    base.write_text(base.read_text() + "\n\ndef _sneak():\n    from omegaml_otel._internal.compat import logger"
                                        "  # planted by the test\n    return logger\n")
    found = layers.upward_imports(src)
    assert len(found) == 1 and found[0].startswith("omegaml_otel._internal.stores.base:"), found
    assert "(stores -> read)" in found[0]


def test_the_check_catches_a_circle_and_the_facade(tmp_path):
    src = _copy(tmp_path)
    emitter = src / "omegaml_otel" / "_internal" / "export" / "emitter.py"
    emitter.write_text(emitter.read_text() + "\n\nimport omegaml_otel._internal.export.pipeline  # noqa: E402\n"
                                             "import omegaml_otel  # noqa: E402\n")
    assert ["omegaml_otel._internal.export.emitter", "omegaml_otel._internal.export.pipeline"] in layers.cycles(src)
    assert any("imports omegaml_otel (export -> drivers)" in f for f in layers.upward_imports(src))


def test_the_check_catches_an_unexplained_local_import(tmp_path):
    src = _copy(tmp_path)
    rows = src / "omegaml_otel" / "_internal" / "export" / "rows.py"
    rows.write_text(rows.read_text() + "\n\ndef _late():\n    import json\n\n    return json\n")
    assert [f for f in layers.unexplained_local_imports(src) if "rows" in f] == \
        [f"omegaml_otel._internal.export.rows:{len(rows.read_text().splitlines()) - 2}: import json"]
