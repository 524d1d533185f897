"""``nlptasks export RUN DEST``: the folder a model hub receives, and ``--push-to-hub``.

The folder holds exactly what a user of the model needs: the weights (safetensors only),
config, tokenizer, generation config, the model card (README.md) and results.json, both
with every local path replaced by its file name (the SHA-256 of the data stays), the model's
JSON files too. Not the eval texts of predictions.jsonl, nor recipe.yaml: a hub repository may be
public. It is written aside and renamed into place, never over an existing folder nor into
a run directory, and never while another process writes into the run.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nlptasks.errors import NlpTasksError, RunDirectoryError, first_line
from nlptasks.recipes import read_yaml
from nlptasks.runs.directory import enclosing_run, load_run
from nlptasks.runs.lock import run_lock
from nlptasks.runs.rundir import write_json


def export(run_dir: str | Path, destination: str | Path) -> Path:
    """Write the hub folder of the run at ``run_dir`` to ``destination`` (must not exist)."""
    run = load_run(run_dir)
    dest = Path(destination).expanduser()
    inside = enclosing_run(dest)
    if inside is not None:
        # A finished run never changes: its folders are what results.json describes.
        raise RunDirectoryError(
            f"{dest} lies inside the run directory {inside}; export never writes into a run. "
            f"Choose a folder outside it, e.g. exported/{run.path.name}."
        )
    if dest.exists():
        raise RunDirectoryError(
            f"{dest} exists already; export never writes over a folder. Choose a new one."
        )
    with run_lock(run.path, exclusive=False, doing="export it"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            stage(run.path, staging)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def stage(run_dir: Path, folder: Path) -> None:
    """Fill ``folder`` with the hub files of ``run_dir``, local paths left out."""
    model = run_dir / "model"
    if not model.is_dir():
        raise NlpTasksError(f"{run_dir} has no model/ folder to export.")
    weights = sorted(model.glob("*.safetensors"))
    if not weights:
        raise NlpTasksError(
            f"{model} has no safetensors weights; nlptasks exports safetensors only."
        )
    local = _local_paths(run_dir)
    for path in sorted(model.iterdir()):
        # Pickled weights are never shipped: safetensors cannot run code when loaded.
        if path.is_file() and path.suffix not in (".bin", ".pt", ".pth", ".ckpt"):
            if path.suffix == ".json" and path.name not in _VOCABULARIES:
                # config.json and its kind may name the folder a model was loaded from.
                found = json.loads(path.read_text(encoding="utf-8"))
                write_json(folder / path.name, _scrubbed(found, local))
            else:
                shutil.copy2(path, folder / path.name)
    card = run_dir / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8", errors="replace")
        (folder / "README.md").write_text(_without(local, text), encoding="utf-8")
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    write_json(folder / "results.json", _public_results(results, local))


def _local_paths(run_dir: Path) -> dict[str, str]:
    """Every local path the run records (data files, the model, the run, the output folder),
    each mapped to what a public copy shows instead: its name."""
    found: set[str] = {str(run_dir), str(run_dir.resolve())}
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    found |= {str(results.get("model_path") or ""), str(results.get("run_dir") or "")}
    found |= {str(p) for p in (results.get("data", {}).get("eval", {}).get("files") or [])}
    found.add(str(results.get("model") or ""))
    recipe = run_dir / "recipe.yaml"
    if recipe.is_file():
        found |= {v for v in _strings(read_yaml(recipe)) if v.startswith(("/", "~"))}
    paths = {p for p in found if p.startswith(("/", "~")) and len(p) > 1}
    return {p: Path(p).name or p for p in sorted(paths, key=len, reverse=True)}


def _strings(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [s for value in tree.values() for s in _strings(value)]
    if isinstance(tree, list):
        return [s for value in tree for s in _strings(value)]
    return [tree] if isinstance(tree, str) else []


def _without(local: dict[str, str], text: str) -> str:
    """``text`` with each local path replaced by its name, longest first (a folder's path is
    part of its files' paths), then every other absolute or ``~/`` path too: the command a
    user typed may name a path the run never recorded (a symlink, a relative folder's parent
    resolved differently), and a public card must name none."""
    for path, name in local.items():
        text = text.replace(path, name)
    return _ANY_PATH.sub(_name_of, text)


# An absolute or home path: ``/`` or ``~/`` that starts a word (after a space, ``=``, a quote,
# a bracket), not the ``/`` inside a URL, a Hub id (org/name) or a relative path (../data).
_ANY_PATH = re.compile(r"(?<![\w.:/<>~-])(?:~/|/)(?=[\w.~-])[^\s'\"`,;()\[\]{}<>|]*")
# The tokenizer's vocabulary holds tokens, not paths: a token that looks like one stays.
_VOCABULARIES = {"tokenizer.json", "vocab.json"}


def _name_of(match: re.Match[str]) -> str:
    return Path(match.group(0).rstrip("/")).name or "~"


def _scrubbed(tree: Any, local: dict[str, str]) -> Any:
    """``tree`` (parsed JSON) with local paths left out of every string value."""
    if isinstance(tree, dict):
        return {key: _scrubbed(value, local) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_scrubbed(value, local) for value in tree]
    return _without(local, tree) if isinstance(tree, str) else tree


def _public_results(results: dict[str, Any], local: dict[str, str]) -> dict[str, Any]:
    """results.json without local paths: file names and SHA-256 identify the data."""
    public = _scrubbed(results, local)
    public["run_dir"] = Path(str(results.get("run_dir", ""))).name
    public["model_path"] = Path(str(results.get("model_path", ""))).name
    eval_data = public.get("data", {}).get("eval", {})
    if isinstance(eval_data.get("files"), list):
        eval_data["files"] = [Path(str(p)).name for p in eval_data["files"]]
    return dict(public)


def push_to_hub(run_dir: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload the run's hub folder to ``repo_id`` (created if missing); returns its URL."""
    from huggingface_hub import HfApi

    run = load_run(run_dir)
    api = HfApi()
    with (
        tempfile.TemporaryDirectory(prefix="nlptasks-push-") as folder,
        run_lock(run.path, exclusive=False, doing="push it"),
    ):
        stage(run.path, Path(folder))
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(
                folder_path=folder,
                repo_id=repo_id,
                commit_message=f"Upload {run.path.name} (nlptasks {run.task} run)",
            )
        # Broad on purpose: the Hub's HTTP errors, httpx's connection errors and OSError
        # differ by huggingface_hub version; any of them leaves the run whole to push later.
        except Exception as exc:
            raise NlpTasksError(
                f"The upload to '{repo_id}' failed ({type(exc).__name__}: {first_line(exc)}). "
                f"The run is kept at {run.path}; push it later with 'nlptasks export "
                f"{run.path} DIR --push-to-hub {repo_id}'."
            ) from exc
    return f"https://huggingface.co/{repo_id}"
