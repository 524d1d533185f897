"""``nlptasks export RUN DEST``: the folder a model hub receives, and ``--push-to-hub``.

The folder holds exactly what a user of the model needs: the weights (safetensors only),
config, tokenizer, generation config, the model card (README.md) and results.json, both
with every local path replaced by its file name (the SHA-256 of the data stays), the model's
JSON files too. Not the eval texts of predictions.jsonl, nor recipe.yaml: a hub repository may be
public. It is written aside and renamed into place, never over an existing folder nor into
a run directory, and never while another process writes into the run.

For serving stacks (transformers, vLLM, TGI, onnxruntime) two options change the folder, each
checked on the run's own eval data before the folder is renamed into place:

- ``--merge-lora``: a plain model with no trace of peft (a LoRA adapter found in ``model/``
  is merged into its base model, the run's labels carried in, and compared with the base
  model with the adapter attached; a LoRA run's ``model/``, merged at save, is copied as is
  and compared with ``RUN/adapter`` merged again when the run kept it); logits within 1e-5.
  One model is in memory at a time: each check keeps only its logits.
- ``--format onnx``: ``model.onnx`` in place of the safetensors weights, for encoder tasks
  (:mod:`nlptasks.runs.onnx_export`); logits within 1e-4 of PyTorch's, with onnxruntime.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlptasks.errors import NlpTasksError, RunDirectoryError, first_line
from nlptasks.recipes import read_yaml
from nlptasks.runs.directory import Run, enclosing_run, load_run
from nlptasks.runs.lock import run_lock
from nlptasks.runs.rundir import write_json

if TYPE_CHECKING:
    from nlptasks.runs.onnx_export import OnnxExport

FORMATS = ("safetensors", "onnx")
MERGE_TOLERANCE = 1e-5
"""Largest |merged - run model| logit accepted: merging adds B @ A into the weights once
instead of per forward pass, which moves float32 sums by rounding only."""
# Weight names only a peft model has: a folder holding any is not a plain model.
_PEFT_MARKS = ("lora_", "base_model.model.", "modules_to_save", "original_module")
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


@dataclass
class Exported:
    """An exported folder and what export did to it beyond copying (one line each)."""

    path: Path
    notes: list[str] = field(default_factory=list)
    onnx: OnnxExport | None = None


def export(run_dir: str | Path, destination: str | Path) -> Path:
    """Write the hub folder of the run at ``run_dir`` to ``destination`` (must not exist)."""
    return export_for_serving(run_dir, destination).path


def export_for_serving(
    run_dir: str | Path,
    destination: str | Path,
    merge_lora: bool = False,
    format: str = "safetensors",
) -> Exported:
    """Write the run's folder to ``destination`` (must not exist), in ``format``
    (``safetensors`` or ``onnx``); ``merge_lora``: a plain model, LoRA adapters merged.
    Every check runs on the folder before it is renamed into place: a failed one leaves
    nothing behind."""
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
    if format not in FORMATS:
        raise NlpTasksError(f"Unknown export format '{format}'. Use one of {', '.join(FORMATS)}.")
    task = None
    if merge_lora or format == "onnx":
        from nlptasks.plugins.registry import load_task
        from nlptasks.runs.model_checks import quiet_libraries

        quiet_libraries()
        task = load_task(run.task)
    if format == "onnx":  # before the lock and the copy: these are one-line answers at once
        from nlptasks.runs.onnx_export import onnx_kind, require_onnx

        require_onnx()
        onnx_kind(task)
    with run_lock(run.path, exclusive=False, doing="export it"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            stage(run.path, staging)
            exported = Exported(dest)
            holds_adapter = (staging / "adapter_config.json").is_file()
            if merge_lora or (format == "onnx" and holds_adapter):
                exported.notes += merge_lora_in(run, staging, task)
            if format == "onnx":
                from nlptasks.runs.onnx_export import write_onnx

                exported.onnx = write_onnx(run.path, staging, staging, task)
                # model.onnx holds the weights: the safetensors copies would only double
                # the download.
                for path in staging.iterdir():
                    if path.name.endswith(".safetensors") or path.name.endswith(
                        ".safetensors.index.json"
                    ):
                        path.unlink()
            _move_into_place(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if exported.onnx is not None:
        exported.onnx.path = dest / exported.onnx.path.name
    return exported


def _move_into_place(staging: Path, dest: Path) -> None:
    """Claim ``dest`` with ``os.mkdir`` (which refuses an existing folder, even one made since
    the first check) and move the staged files into it: ``rename`` of a folder would replace
    an empty one made in between."""
    try:
        os.mkdir(dest)
    except FileExistsError:
        raise RunDirectoryError(
            f"{dest} exists already (made while export ran); export never writes over a "
            f"folder. Choose a new one."
        ) from None
    try:
        for path in sorted(staging.iterdir()):
            os.rename(path, dest / path.name)
    except OSError:
        shutil.rmtree(dest, ignore_errors=True)  # ours: made above
        raise


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


def merge_lora_in(run: Run, folder: Path, task: Any) -> list[str]:
    """Make ``folder`` (a staged copy of ``RUN/model``) a plain transformers model and check
    it; returns what was done, one line each. A run without LoRA is left as it is."""
    from nlptasks.models import adapter_labels, load_pretrained
    from nlptasks.runs import model_checks

    model_dir = run.path / "model"
    holds_adapter = (folder / "adapter_config.json").is_file()
    lora = (run.results.get("train") or {}).get("lora")
    kept_adapter = run.path / "adapter"
    kept = (kept_adapter / "adapter_config.json").is_file()
    if not holds_adapter and not lora and not kept:
        return ["Not a LoRA run: model/ is a plain transformers model already, exported as is."]
    notes = []
    if holds_adapter:
        _require_base(model_dir)
    # The run's own files: the staged copy names no local path (its base model's neither).
    model_class = model_checks.auto_class_of(task, model_dir)
    if holds_adapter:
        generation = _kept_files(folder, ("generation_config.json",))
        merged = _merge_adapter(model_dir, model_class, adapter_labels(model_dir))
        for name in _ADAPTER_FILES:
            (folder / name).unlink(missing_ok=True)
        merged.save_pretrained(folder)
        del merged  # one model at a time
        gc.collect()
        _restore(folder, generation)
        _scrub_json(run.path, folder / "config.json")
        notes.append(
            f"Merged the LoRA adapter in model/ into its base model "
            f"({_base_of(model_dir)}) with peft's merge_and_unload."
        )
    _check_plain(folder)
    # One model in memory at a time: each is loaded, gives its logits and is freed.
    exported = _loaded(model_class, folder)
    architectures = json.loads((folder / "config.json").read_text(encoding="utf-8")).get(
        "architectures"
    )
    if architectures != [type(exported).__name__]:
        raise NlpTasksError(
            f"The exported config.json names architectures {architectures}, but the model "
            f"loads as {type(exported).__name__}; serving stacks would build the wrong "
            f"model."
        )
    batch, source = model_checks.real_batch(run.path, task, _tokenizer(folder), exported)
    found = model_checks.logits_of(exported, batch)
    del exported  # one model at a time
    gc.collect()
    loads = f"Checked: it loads with {model_class.__name__}"
    if holds_adapter:
        # The run's model as predict loads it: the base model with the adapter attached.
        attached = _loaded(model_class, model_dir, load_pretrained)
        expected = model_checks.logits_of(attached, batch)
        del attached  # one model at a time
        gc.collect()
        difference = _compared(expected, found, source, "the base model with the adapter")
        notes.append(
            f"{loads}; compared with the base model with model/'s adapter attached (peft) on "
            f"{source}: max |difference| {difference:.2g}."
        )
        return notes
    notes.append(
        f"{loads}; model/ of this LoRA run is merged already (nlptasks merges at save), "
        f"copied as is."
    )
    if kept:
        notes.append(_remerged(kept_adapter, model_class, found, batch, source))
    else:
        notes.append(
            "No RUN/adapter to compare with (the run kept none: lora.save_adapter=false); "
            "the merged weights were not checked again."
        )
    return notes


def _compared(expected: Any, found: Any, source: str, reference: str) -> float:
    """The largest |difference| of the exported model's logits from ``reference``'s; more
    than :data:`MERGE_TOLERANCE` is an error (nothing is written)."""
    from nlptasks.runs import model_checks

    difference = model_checks.max_difference(expected, found)
    if not difference <= MERGE_TOLERANCE:  # also catches NaN
        raise NlpTasksError(
            f"The merged model's logits differ from {reference}'s by up to {difference:.3g} "
            f"on {source} (more than {MERGE_TOLERANCE:g}); nothing was exported. Export "
            f"without --merge-lora, or re-run."
        )
    return difference


def _remerged(adapter: Path, model_class: Any, found: Any, batch: Any, source: str) -> str:
    """RUN/adapter merged into its base model again, compared with the exported model's
    logits ``found``: the adapter a user attaches to the base model (vLLM's
    --lora-modules) is the same model."""
    from nlptasks.models import adapter_labels
    from nlptasks.runs import model_checks

    try:
        _require_base(adapter)
        merged = _merge_adapter(adapter, model_class, adapter_labels(adapter))
    except NlpTasksError as exc:
        return f"RUN/adapter was not re-merged to compare: {first_line(exc)}"
    expected = model_checks.logits_of(merged, batch)
    del merged  # one model at a time
    gc.collect()
    difference = _compared(expected, found, source, "RUN/adapter merged into its base model")
    return (
        f"Re-merged RUN/adapter into its base model and compared on {source}: max "
        f"|difference| {difference:.2g}."
    )


def _require_base(adapter_folder: Path) -> None:
    """The adapter's base model can be loaded here, or a one-line error naming both: what
    a merge needs first."""
    from transformers import AutoConfig

    from nlptasks.errors import ModelError, hub_offline
    from nlptasks.models import load_pretrained

    base = _base_of(adapter_folder)
    config = adapter_folder / "adapter_config.json"
    if not base:
        raise NlpTasksError(
            f"{config} names no base_model_name_or_path; export cannot merge the adapter "
            f"without its base model."
        )
    try:
        load_pretrained(base, AutoConfig.from_pretrained)
    except ModelError as exc:
        if base.startswith(("/", "~", ".")) and not Path(base).expanduser().exists():
            why = "no such folder here"
        elif hub_offline():
            why = "not a local folder, and not in the Hub cache with HF_HUB_OFFLINE=1"
        else:
            why = first_line(exc)
        raise NlpTasksError(
            f"The LoRA adapter in {adapter_folder} needs its base model '{base}' ({why}). "
            f"Put the base model there, or set base_model_name_or_path in {config} to "
            f"where it is."
        ) from exc


def _base_of(adapter_folder: Path) -> str:
    config = json.loads((adapter_folder / "adapter_config.json").read_text(encoding="utf-8"))
    return str(config.get("base_model_name_or_path") or "")


def _merge_adapter(
    adapter_folder: Path, model_class: Any, labels: dict[str, Any] | None = None
) -> Any:
    """The base model named in ``adapter_config.json`` with the adapter merged in (peft's
    ``merge_and_unload``): plain transformers modules, the adapter's heads included.
    ``labels``: the run's id2label, label2id, problem_type (the base model's config does
    not have them; a head of another size is replaced by the adapter's)."""
    import peft

    from nlptasks.models import load_pretrained

    base_ref = _base_of(adapter_folder)
    if not base_ref:
        raise NlpTasksError(
            f"{adapter_folder / 'adapter_config.json'} names no base_model_name_or_path; "
            f"export cannot merge the adapter without its base model."
        )
    settings = dict(labels or {})
    if settings:
        settings["ignore_mismatched_sizes"] = True  # as training did: the adapter has the head

    def load(reference: str, **extra: Any) -> Any:
        return model_class.from_pretrained(reference, **settings, **extra)

    base = _loaded(model_class, base_ref, lambda ref, _: load_pretrained(ref, load))
    with warnings.catch_warnings():
        # peft calls a transformers method that transformers deprecates: not the user's.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        adapted = peft.PeftModel.from_pretrained(base, str(adapter_folder))
        return adapted.merge_and_unload()


def _loaded(model_class: Any, reference: str | Path, through: Any = None) -> Any:
    """``model_class.from_pretrained(reference)`` in eval mode, transformers' load report
    silenced (it is not the user's business here)."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if through is not None:
                model = through(str(reference), model_class.from_pretrained)
            else:
                model = model_class.from_pretrained(reference)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model.eval()


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _check_plain(folder: Path) -> None:
    """No adapter file and no peft weight name: what vLLM and TGI load as a plain model."""
    from safetensors import safe_open

    left = [name for name in _ADAPTER_FILES if (folder / name).exists()]
    if left:
        raise NlpTasksError(f"The merged folder still holds {left[0]}; it is not a plain model.")
    for weights in sorted(folder.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            marked = [k for k in handle.keys() if any(m in k for m in _PEFT_MARKS)]  # noqa: SIM118
        if marked:
            raise NlpTasksError(
                f"{weights.name} holds peft weight names ({marked[0]}); serving stacks would "
                f"not load it as a plain model."
            )


def _kept_files(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in names if (folder / n).is_file()}


def _restore(folder: Path, kept: dict[str, bytes]) -> None:
    """Put back files save_pretrained rewrote: the run's generation settings, not the base
    model's."""
    for name, content in kept.items():
        (folder / name).write_bytes(content)


def _scrub_json(run_dir: Path, path: Path) -> None:
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        write_json(path, _scrubbed(found, _local_paths(run_dir)))


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


def push_to_hub(
    run_dir: str | Path, repo_id: str, private: bool = False, exported: Path | None = None
) -> str:
    """Upload the run's hub folder to ``repo_id`` (created if missing); returns its URL.
    ``exported``: upload this folder export wrote (merged, ONNX) instead."""
    from huggingface_hub import HfApi

    run = load_run(run_dir)
    api = HfApi()
    with (
        tempfile.TemporaryDirectory(prefix="nlptasks-push-") as folder,
        run_lock(run.path, exclusive=False, doing="push it"),
    ):
        if exported is None:
            stage(run.path, Path(folder))
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(
                folder_path=str(exported) if exported is not None else folder,
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
