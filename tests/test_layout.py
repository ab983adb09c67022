"""The package's structure: no import cycles, argument parsing only in ``cli``, and a command line
that answers ``--help`` and ``models`` without importing PyTorch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import import_graph  # noqa: E402


def test_no_import_cycles_and_argparse_only_in_the_cli():
    edges = import_graph.graph()
    assert "emotion2vec_plus.inference" in edges and edges["emotion2vec_plus.cli.predict"]  # the graph is real
    assert import_graph.cycles(edges) == []
    assert import_graph.argparse_outside_cli() == []
    assert import_graph.private_imports() == []
    assert import_graph.unresolved_imports() == []  # lazy imports too: nothing else checks them before they run


def test_the_cycle_finder_finds_a_cycle():
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_help_and_models_do_not_import_torch_or_numpy():
    code = ("import sys, contextlib, io\n"
            "from emotion2vec_plus.cli import main\n"
            "for argv in (['models'], ['models', '--json']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        assert main(argv) == 0\n"
            "    assert 'compact' in out.getvalue() and 'large' in out.getvalue()\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'av', 'gradio', 'fastapi') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_error_class_lives_in_errors_and_is_exported():
    import ast
    import inspect

    import emotion2vec_plus
    from emotion2vec_plus import errors

    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if obj.__module__ == errors.__name__]
    assert len(classes) >= 20
    for cls in classes:
        assert issubclass(cls, emotion2vec_plus.Emotion2VecError), cls
        assert getattr(emotion2vec_plus, cls.__name__) is cls and cls.__name__ in emotion2vec_plus.__all__
    elsewhere = []
    for path in import_graph.PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # Private signals (audio._CannotOpen, service._BodyTooLarge) never leave their module.
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and (node.name.endswith("Error") or any(
                    getattr(base, "id", "") in ("Exception", "RuntimeError", "ValueError") for base in node.bases)):
                elsewhere.append(f"{path.name}: {node.name}")
    assert elsewhere == []
