"""``nlptasks plugins new``: scaffold an installable task plugin from the shipped templates.

The templates (``nlptasks/templates/plugin``) are plain files with ``{{key}}`` placeholders;
one folder per task shape holds the task, its sample data and its recipe, and ``common``
the rest. A scaffold is written to a temporary folder and renamed into place, so a failure
never leaves half a package behind.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from nlptasks.errors import NlpTasksError
from nlptasks.plugins.manager import DEFAULT_PLUGINS

SHAPES = ("classification", "tokens", "generation")
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


@dataclass(frozen=True)
class Shape:
    description: str
    model_shape: str
    """Which tiny model the conformance kit trains (encoder, causal, seq2seq)."""
    predict_example: str


SHAPE_INFO = {
    "classification": Shape("Text classification.", "encoder", '"a witty script"'),
    "tokens": Shape(
        "Token classification (one tag per word).", "encoder", '"the owl sleeps in the cave"'
    ),
    "generation": Shape(
        "Causal language modelling: perplexity and continuations.",
        "causal",
        '"The fox lives in the"',
    ),
}


def new_plugin(name: str, shape: str, parent: str | Path) -> Path:
    """Write the package ``nlptasks-NAME`` for task ``name`` into ``parent``; returns it."""
    if not NAME.fullmatch(name):
        raise NlpTasksError(
            f"'{name}' is not a task name: use lower-case letters, digits and single dashes, "
            f"starting with a letter (e.g. 'emotion' or 'doc-tags')."
        )
    if shape not in SHAPES:
        raise NlpTasksError(f"Unknown task shape '{shape}'. Use one of {', '.join(SHAPES)}.")
    builtin = [module.rsplit(".", 1)[-1] for module in DEFAULT_PLUGINS]
    if name in builtin:
        # Its entry point and task would both clash with the built-in plugin of that name.
        raise NlpTasksError(
            f"'{name}' is the name of a built-in nlptasks task. Choose another name (e.g. "
            f"'my-{name}')."
        )
    if Path(parent).exists() and not Path(parent).is_dir():
        raise NlpTasksError(f"'{parent}' is a file, not a folder. Give --directory a folder.")
    module = name.replace("-", "_")
    package = f"nlptasks_{module}"
    destination = Path(parent) / f"nlptasks-{name}"
    if destination.exists():
        raise NlpTasksError(
            f"'{destination}' exists already. Choose another name or folder (--directory)."
        )
    info = SHAPE_INFO[shape]
    values = {
        "task": name,
        "module": module,
        "package": package,
        "dist": f"nlptasks-{name}",
        "Class": "".join(part.capitalize() for part in module.split("_")),
        "description": info.description,
        "shape": shape,
        "model_shape": info.model_shape,
        "predict_example": info.predict_example,
        "nlptasks_version": _own_version(),
    }
    layout = {
        "pyproject.toml": "common/pyproject.toml",
        "README.md": "common/README.md",
        f"{package}/__init__.py": "common/__init__.py",
        f"{package}/task.py": f"{shape}/task.py",
        f"{package}/sample.py": f"{shape}/sample.py",
        f"{package}/recipes/default.yaml": f"{shape}/default.yaml",
        "tests/conftest.py": "common/conftest.py",
        f"tests/test_{module}.py": "common/test_task.py",
    }
    templates = files("nlptasks") / "templates" / "plugin"
    Path(parent).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".nlptasks-new-", dir=parent))
    try:
        for target, source in layout.items():
            text = (templates / f"{source}.tmpl").read_text(encoding="utf-8")
            path = staging / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(text, values), encoding="utf-8")
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def installed_plugin(name: str) -> str | None:
    """The distribution of an installed plugin whose entry point is called ``name``."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="nlptasks", name=name):
        return ep.dist.name if ep.dist else "an unknown distribution"
    return None


def render(text: str, values: dict[str, str]) -> str:
    """Fill ``{{key}}`` placeholders; an unknown key is a bug in the templates."""

    def fill(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", fill, text)


def _own_version() -> str:
    from nlptasks.version import __version__

    return __version__
