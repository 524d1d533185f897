"""``nlptasks export RUN DEST``: the folder a model hub receives, and ``--push-to-hub``.

The folder holds exactly what a user of the model needs: the weights (safetensors only),
config, tokenizer, generation config, the model card (README.md) and results.json. Not the
eval texts of predictions.jsonl, nor recipe.yaml (local paths): a hub repository may be
public. It is written aside and renamed into place, and never over an existing folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from nlptasks.errors import NlpTasksError, RunDirectoryError
from nlptasks.runs.directory import load_run

# Besides everything in RUN/model (weights, config, tokenizer).
RUN_FILES = ("README.md", "results.json")


def export(run_dir: str | Path, destination: str | Path) -> Path:
    """Write the hub folder of the run at ``run_dir`` to ``destination`` (must not exist)."""
    run = load_run(run_dir)
    dest = Path(destination)
    if dest.exists():
        raise RunDirectoryError(
            f"{dest} exists already; export never writes over a folder. Choose a new one."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        stage(run.path, staging)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def stage(run_dir: Path, folder: Path) -> None:
    """Fill ``folder`` with the hub files of ``run_dir``."""
    model = run_dir / "model"
    if not model.is_dir():
        raise NlpTasksError(f"{run_dir} has no model/ folder to export.")
    weights = sorted(model.glob("*.safetensors"))
    if not weights:
        raise NlpTasksError(
            f"{model} has no safetensors weights; nlptasks exports safetensors only."
        )
    for path in sorted(model.iterdir()):
        # Pickled weights are never shipped: safetensors cannot run code when loaded.
        if path.is_file() and path.suffix not in (".bin", ".pt", ".pth", ".ckpt"):
            shutil.copy2(path, folder / path.name)
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, folder / name)


def push_to_hub(run_dir: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload the run's hub folder to ``repo_id`` (created if missing); returns its URL."""
    from huggingface_hub import HfApi

    run = load_run(run_dir)
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="nlptasks-push-") as folder:
        stage(run.path, Path(folder))
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            commit_message=f"Upload {run.path.name} (nlptasks {run.task} run)",
        )
    return f"https://huggingface.co/{repo_id}"
