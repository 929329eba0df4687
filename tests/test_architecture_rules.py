"""Project rules that code review would otherwise have to catch."""

from __future__ import annotations

import ast

from helpers import REPO_ROOT

FORBIDDEN_IN_MODELS = ("lightning", "pytorch_lightning", "hydra", "omegaconf", "torch.distributed")


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_model_code_is_plain_pytorch():
    offenders = {}
    for path in (REPO_ROOT / "ltx" / "models").rglob("*.py"):
        bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_MODELS)}
        if bad:
            offenders[str(path.relative_to(REPO_ROOT))] = sorted(bad)
    assert not offenders, f"ltx/models/ must not import Lightning, Hydra or torch.distributed: {offenders}"


def test_checkpoints_are_never_unpickled_unsafely():
    offenders = []
    for path in list((REPO_ROOT / "ltx").rglob("*.py")) + list((REPO_ROOT / "data_pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load" and \
                    getattr(node.func.value, "id", "") == "torch":
                if not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


def test_the_package_never_imports_the_data_pipeline():
    """Dependencies run one way: ``data_pipeline`` builds on ``ltx`` (e.g. the demo world's vocabulary in
    ``ltx.evaluation``), never the reverse."""
    offenders = {}
    for path in (REPO_ROOT / "ltx").rglob("*.py"):
        bad = {m for m in imported_modules(path) if m == "data_pipeline" or m.startswith("data_pipeline.")}
        if bad:
            offenders[str(path.relative_to(REPO_ROOT))] = sorted(bad)
    assert not offenders, f"ltx/ must not import data_pipeline: {offenders}"
