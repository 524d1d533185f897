"""The run directory: resolved recipe, results with provenance, model card."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from nlptasks.errors import RunDirectoryError

PACKAGES = ("nlptasks", "torch", "transformers", "datasets", "accelerate", "evaluate", "tokenizers")


def new_run_dir(output_dir: str | Path, task: str, recipe: str, exact: bool = False) -> Path:
    """Create a new, empty run directory; never reuse an existing one.

    With ``exact`` the directory is ``output_dir`` itself (``--output-dir``) and must not exist
    yet; otherwise it is ``output_dir/<task>-<recipe>-<timestamp>``, suffixed if taken.
    """
    if exact:
        path = Path(output_dir)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except FileExistsError:
            raise RunDirectoryError(
                f"Output directory '{path}' already exists; runs never overwrite earlier "
                f"results. Choose a new --output-dir or remove that one."
            ) from None
        return path
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{task}-{_slug(recipe)}-{stamp}"
    for attempt in range(1000):
        path = root / (base if attempt == 0 else f"{base}-{attempt + 1}")
        try:
            path.mkdir()  # atomic: two runs started in the same second get different folders
            return path
        except FileExistsError:
            continue
    raise RunDirectoryError(f"Cannot create a new run directory under '{root}'.")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "recipe"


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def provenance(seed: int, device: str, num_processes: int, mixed_precision: str) -> dict[str, Any]:
    """Versions, hardware and source revision, so a result can be traced and reproduced."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": {"python": platform.python_version(), **versions},
        "seed": seed,
        "device": device,
        "num_processes": num_processes,
        "mixed_precision": mixed_precision,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": _gpu_name(),
        "git_commit": git_commit(Path.cwd()),
    }


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder``'s git repository, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def model_card(
    *,
    run_name: str,
    task: str,
    pipeline_tag: str,
    base_model: str,
    dataset_name: str,
    dataset_split: str,
    metrics: dict[str, float],
    recipe_yaml: str,
    extra: dict[str, Any],
    train_summary: dict[str, Any],
) -> str:
    """A README.md with Hub model-index front matter (the leaderboard format)."""
    metric_rows = [
        {"type": name, "value": round(value, 4), "name": name.replace("_", " ")}
        for name, value in metrics.items()
        if name != "loss"
    ]
    front = {
        "library_name": "transformers",
        "pipeline_tag": pipeline_tag,
        "tags": ["nlptasks", task],
        "base_model": base_model,
        "model-index": [
            {
                "name": run_name,
                "results": [
                    {
                        "task": {"type": pipeline_tag, "name": task},
                        "dataset": {
                            "name": dataset_name,
                            "type": dataset_name,
                            "split": dataset_split,
                        },
                        "metrics": metric_rows,
                    }
                ],
            }
        ],
    }
    table = "\n".join(f"| {row['name']} | {row['value']} |" for row in metric_rows)
    extra_lines = "\n".join(f"- {key}: {value}" for key, value in extra.items())
    summary = "\n".join(f"- {key}: {value}" for key, value in train_summary.items())
    return (
        "---\n"
        + yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
        + "---\n\n"
        + f"# {run_name}\n\n"
        + f"`{base_model}` fine-tuned for **{task}** on {dataset_name} with nlptasks.\n\n"
        + f"## Results ({dataset_name}, {dataset_split})\n\n| metric | value |\n|---|---|\n"
        + table
        + "\n\n## Training\n\n"
        + summary
        + ("\n" + extra_lines if extra_lines else "")
        + "\n\n## Use\n\n```python\nfrom transformers import pipeline\n"
        + f'pipe = pipeline("{pipeline_tag}", model="PATH/TO/model")\n```\n\n'
        + "## Recipe (re-run with `nlptasks run "
        + f"{task} --recipe recipe.yaml`)\n\n```yaml\n{recipe_yaml}```\n"
    )
