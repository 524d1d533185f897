"""What a run trained with, recorded when it starts, so that nothing later silently changes
what its results mean: a resume of an edited recipe.yaml, or an eval that re-splits training
data which has changed (its held-out rows would include rows the model trained on).

The record is the ``trained_with`` field of the run's first ``run_start`` event in
events.jsonl: the resolved recipe, and the SHA-256 of its local training files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlptasks.errors import NlpTasksError
from nlptasks.recipes import Recipe, recipe_to_dict
from nlptasks.runs.data_identity import eval_split_name, files_sha256, held_out, train_files
from nlptasks.runs.events import read_events

# Keys that change no number of the run: how it is described and where runs are written.
_FREE = {"description", "output_dir", "run_name", "license", "expect", "name"}
# Training keys a resume may change: none alters a weight or which checkpoint is best.
_FREE_TRAIN = {
    "train.log_every",  # how often the loss is printed and logged, not what it is
    "train.save_every",  # when checkpoints are written; a resume restores the exact state
    "train.save_total_limit",  # how many old checkpoints are kept (best and last always are)
    "train.bootstrap_resamples",  # the precision of the reported intervals, after training
    "train.bootstrap_seed",  # which resamples those intervals draw, after training
}
# Not free: train.eval_every, which decides the evaluations that pick the best checkpoint.
# Data paths may change when the data moved, as long as the bytes are the same.
_PATHS = ("data.train_path", "data.eval_path")


def record(recipe: Recipe) -> dict[str, Any]:
    """The ``trained_with`` record of a run that starts with ``recipe`` (paths absolute)."""
    return {
        "recipe": recipe_to_dict(recipe),
        "train_sha256": files_sha256(train_files(recipe)),
        "files_sha256": {
            key: files_sha256([Path(str(path))])
            for key, path in _flat(recipe_to_dict(recipe)).items()
            if _is_path(key) and isinstance(path, str)
        },
    }


def recorded(run_dir: Path) -> dict[str, Any] | None:
    """The record of the run's first start, or None for a run from before records."""
    try:
        for event in read_events(run_dir):
            if event.get("type") == "run_start":
                found = event.get("trained_with")
                return found if isinstance(found, dict) else None
    except OSError:
        return None
    return None


def check_resume(run_dir: Path, recipe: Recipe) -> None:
    """Refuse to resume a run whose recipe.yaml (or the data files it names) changed since
    the run started: the results would report the new values for the whole run."""
    found = recorded(run_dir)
    if found is None or not isinstance(found.get("recipe"), dict):
        return
    before, now = _flat(found["recipe"]), _flat(recipe_to_dict(recipe))
    hashes = found.get("files_sha256") or {}
    changes = []
    for key in sorted(before.keys() | now.keys()):
        if key.split(".")[0] in _FREE or key in _FREE_TRAIN:
            continue
        old, new = before.get(key), now.get(key)
        if _is_path(key) and isinstance(new, str) and key in hashes:
            # A moved file is the same data; a file with other bytes is not.
            if files_sha256([Path(new)]) != hashes[key]:
                changes.append(f"{key}: the file's content differs from the one it trained on")
            continue
        if old != new:
            changes.append(f"{key}: {_shown(old)} -> {_shown(new)}")
    if changes:
        raise NlpTasksError(
            f"{run_dir / 'recipe.yaml'} changed since the run started ({'; '.join(changes[:3])}"
            f"{'; ...' if len(changes) > 3 else ''}); a resumed run must train with what it "
            f"started with. Undo the change, or start a new run with that recipe: nlptasks "
            f"run {recipe.task} --recipe {run_dir / 'recipe.yaml'}"
        )


def check_eval_split(run_dir: Path, run_results: dict[str, Any] | None, recipe: Recipe) -> None:
    """Refuse an eval of a run's model on a split held out of the run's own training data
    when that split no longer holds what the run held out: the training file changed, or the
    split settings differ. Either way, rows the model trained on would be scored."""
    if not held_out(recipe):
        return
    found = recorded(run_dir) or {}
    trained = found.get("recipe") if isinstance(found.get("recipe"), dict) else None
    recorded_eval = ((run_results or {}).get("data") or {}).get("eval") or {}
    if trained is None and not recorded_eval:
        return  # a run from before records: nothing to compare with
    if trained is not None:
        before = _flat(trained)
        if not _same_training_source(before, recipe):
            return  # held out of other data than the run's: the model never saw it
        for key in ("data.split_seed", "data.eval_fraction", "data.train_split"):
            now = _flat(recipe_to_dict(recipe)).get(key)
            if before.get(key) != now:
                raise NlpTasksError(
                    f"{key}={_shown(now)} holds out other rows of the training data than run "
                    f"'{run_dir}' held out ({key} {_shown(before.get(key))}), so the eval split "
                    f"would hold rows the model trained on. Drop that override, or evaluate on "
                    f"separate data: data.eval_path=FILE."
                )
        old_sha = found.get("train_sha256")
    else:
        if recorded_eval.get("split") != eval_split_name(recipe):
            raise NlpTasksError(
                f"The eval split ({eval_split_name(recipe)}) is not the one run '{run_dir}' "
                f"held out ({recorded_eval.get('split')}), so it would hold rows the model "
                f"trained on. Evaluate on separate data: data.eval_path=FILE."
            )
        old_sha = recorded_eval.get("sha256")
    files = train_files(recipe)
    if old_sha and files_sha256(files) != old_sha:
        names = ", ".join(path.name for path in files)
        raise NlpTasksError(
            f"The training data of run '{run_dir}' ({names}) changed since it trained (its "
            f"SHA-256 differs), so re-splitting it would score rows the model trained on. "
            f"Restore the file, or evaluate on separate data: data.eval_path=FILE."
        )


def _same_training_source(before: dict[str, Any], recipe: Recipe) -> bool:
    now = _flat(recipe_to_dict(recipe))
    keys = [k for k in now if _is_path(k) and not k.endswith("eval_path")]
    keys += ["data.dataset", "data.dataset_config"]
    return all(before.get(k) == now.get(k) for k in keys)


def _is_path(key: str) -> bool:
    return key in _PATHS or (key.startswith("options.") and key.endswith("_path"))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    found: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            found.update(_flat(value, name))
        else:
            found[name] = value
    return found


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
