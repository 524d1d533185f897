"""The conformance kit: one test class that every task plugin subclasses.

In a plugin's test suite (``pytest_plugins = ["nlptasks.testing"]``)::

    from nlptasks.testing import TaskConformance, TinyData

    class TestNer(TaskConformance):
        task = "ner"
        plugin = "nlptasks_ner"          # entry-point name or module path
        model_shape = "encoder"          # encoder, causal or seq2seq

        def tiny_data(self, folder):     # built-in tasks have one already
            ...
            return TinyData(overrides=[...], texts=[...], records=[{"text": "..."}])

Each check is its own test. They share one 3-step training run of a tiny model (built in a
second, its tokenizer trained on the tiny data), made once per class, in-process, with
only the plugin under test loaded (``builtins = True`` adds the built-in plugins).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from nlptasks.task import AUTO_CLASSES  # the Auto class that loads a saved model, by tag
from nlptasks.testing.processes import run_nlptasks
from nlptasks.testing.tiny_datasets import TinyData, tiny_dataset

SHAPES = ("encoder", "causal", "seq2seq")


def make_tiny_model(shape: str, folder: str | Path, texts: Sequence[str], seed: int = 0) -> Path:
    """A tiny random model of a task shape (``encoder``: BERT, ``causal``: GPT-2,
    ``seq2seq``: BART) with a tokenizer trained on ``texts``; no dropout, so a batch's loss
    is the same in training and evaluation."""
    from nlptasks.testing.tiny_models import make_tiny_bart, make_tiny_bert, make_tiny_gpt2

    makers = {"encoder": make_tiny_bert, "causal": make_tiny_gpt2, "seq2seq": make_tiny_bart}
    if shape not in makers:
        raise ValueError(f"model_shape must be one of {', '.join(SHAPES)}, not '{shape}'")
    return makers[shape](folder, texts, seed=seed, dropout=0.0)


@dataclasses.dataclass
class ConformanceRun:
    """The shared 3-step run: where it is and how it was made."""

    root: Path
    run_dir: Path
    model: Path
    overrides: list[str]
    data: TinyData
    metrics: dict[str, float]


class TaskConformance:
    """Subclass it with ``task`` (and ``plugin`` for a third-party task) to run the kit.

    Override ``tiny_data`` for a task that is not built in; set ``recipe`` to test another
    recipe than the task's default, ``overrides`` to change it, ``auto_class`` when the
    pipeline tag does not say which Auto class loads the model.
    """

    task: ClassVar[str]
    plugin: ClassVar[str | None] = None
    """The plugin under test: an installed entry-point name or a module's import path; by
    default the built-in ``nlptasks.builtins.<task>``."""
    builtins: ClassVar[bool] = False
    """Load the built-in plugins too (a plugin that uses their presets or datasets)."""
    model_shape: ClassVar[str] = "encoder"
    recipe: ClassVar[str | None] = None
    overrides: ClassVar[tuple[str, ...]] = ()
    auto_class: ClassVar[str | None] = None
    steps: ClassVar[int] = 3
    nan_metrics: ClassVar[tuple[str, ...]] = ()
    """Metrics that may be NaN (undefined) on the tiny data; every other one must be a number."""

    # ------------------------------------------------------------------------- set-up
    def tiny_data(self, folder: Path) -> TinyData:
        """The dataset the kit trains on; built-in tasks have one (:mod:`tiny_datasets`).
        ``folder`` exists and is empty: write the data files there."""
        try:
            return tiny_dataset(self.task, folder)
        except KeyError:
            raise TypeError(
                f"{type(self).__name__} must define tiny_data(self, folder) -> TinyData: "
                f"'{self.task}' is not a built-in task with a tiny dataset."
            ) from None

    @classmethod
    def plugin_spec(cls) -> str:
        return cls.plugin or f"nlptasks.builtins.{cls.task}"

    @contextlib.contextmanager
    def plugins_under_test(self) -> Iterator[None]:
        from nlptasks.plugins import manager as plugins

        with plugins.isolated([self.plugin_spec()], builtins=self.builtins):
            yield

    @pytest.fixture(autouse=True)
    def _isolated(self) -> Iterator[None]:
        with self.plugins_under_test():
            yield

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_run(cls, tmp_path_factory: pytest.TempPathFactory) -> ConformanceRun:
        import nlptasks

        self = cls()  # one run per class, made with the subclass's settings
        root = tmp_path_factory.mktemp(f"conformance-{self.task}")
        folder = root / "data"
        folder.mkdir()  # tiny_data writes its files here
        data = self.tiny_data(folder)
        model = make_tiny_model(self.model_shape, root / "tiny-model", data.texts)
        overrides = [
            f"model={model}",
            f"train.max_steps={self.steps}",
            "train.batch_size=4",
            "train.eval_batch_size=8",
            "train.gradient_accumulation_steps=1",
            "train.warmup_ratio=0",
            "train.warmup_steps=0",
            # Exact float32 sums: the checks compare losses and metrics across paths.
            "train.mixed_precision=no",
            "train.eval_every=",
            "lora.enabled=false",
            *data.overrides,
            *self.overrides,
        ]
        run_dir = root / "run"
        with self.plugins_under_test():
            result = nlptasks.run(self.task, self.recipe, *overrides, output_dir=str(run_dir))
        return ConformanceRun(root, run_dir, model, overrides, data, dict(result.metrics))

    def _task(self) -> Any:
        from nlptasks.plugins.registry import load_task

        return load_task(self.task)

    def _auto_class(self, folder: str | Path) -> str:
        """The transformers Auto class that loads the task's saved model from ``folder``."""
        import transformers

        task = self._task()
        tag = task.info.pipeline_tag
        name = self.auto_class or AUTO_CLASSES.get(tag)
        assert name, f"set auto_class: pipeline tag '{tag}' names no Auto class"
        config = transformers.AutoConfig.from_pretrained(folder)
        if name == "AutoModelForSeq2SeqLM" and not config.is_encoder_decoder:
            name = "AutoModelForCausalLM"  # a decoder-only model prompted to translate
        return name

    # ------------------------------------------------------------------------- checks
    def test_task_follows_the_protocol(self) -> None:
        """A `Task` whose `info` has the registered name, unique metric names without `loss`,
        input fields, an options dataclass."""
        from nlptasks.task import Task, TaskInfo

        task = self._task()
        assert isinstance(task, Task), "the task lacks Task protocol methods or attributes"
        info = task.info
        assert isinstance(info, TaskInfo), "info must be a nlptasks.TaskInfo"
        assert info.name == self.task
        names = [spec.name for spec in info.metrics]
        assert len(names) == len(set(names)), f"metric names repeat: {names}"
        assert "loss" not in names, "'loss' is reported by every task; do not declare it"
        assert info.input_fields, "input_fields must name the fields predict reads"
        assert dataclasses.is_dataclass(info.options)

    def test_loads_beside_the_builtins(self) -> None:
        """No name clash with the built-in plugins.

        Installed next to nlptasks, the plugin and its task name clash with no built-in (the
        built-ins always load in real use)."""
        from nlptasks.plugins import manager as plugins
        from nlptasks.plugins.registry import get_registries

        with plugins.isolated([self.plugin_spec()], builtins=True):
            entry = get_registries().tasks.get(self.task)  # a clash raises here
            assert entry.load().info.name == self.task

    def test_recipes_validate(self) -> None:
        """The plugin's recipes validate, `default_recipe` among them."""
        from nlptasks.plugins.registry import get_registries
        from nlptasks.recipes import load_recipe

        names = [e.name.split("/", 1)[1] for e in get_registries().recipes if self.task in e.tasks]
        assert names, f"the plugin registers no recipe for '{self.task}'"
        assert self._task().info.default_recipe in names, "default_recipe is not registered"
        for name in names:
            recipe = load_recipe(self.task, name, [])
            assert recipe.task == self.task

    def test_trains_in_a_few_steps(self, conformance_run: ConformanceRun) -> None:
        """`steps` optimizer steps, a finite loss, safetensors saved."""
        events = [
            json.loads(line)
            for line in (conformance_run.run_dir / "events.jsonl").read_text().splitlines()
        ]
        steps = [e["step"] for e in events if e["type"] == "step"]
        assert steps and max(steps) == self.steps, f"optimizer steps {steps}"
        assert math.isfinite(conformance_run.metrics["loss"])
        saved = {p.name for p in (conformance_run.run_dir / "model").iterdir()}
        assert "config.json" in saved and any(n.endswith(".safetensors") for n in saved), saved

    def test_forward_gives_one_loss_per_example(self, conformance_run: ConformanceRun) -> None:
        """On a train and an eval batch: a `Step` with a finite loss of shape `(batch,)`, a
        gradient in training only, counts of that shape, an output row per example.

        Training and evaluation use this one call, so their losses are the same quantity."""
        import torch

        from nlptasks.batching import collate_for
        from nlptasks.recipes import load_recipe
        from nlptasks.runner import prepare_run
        from nlptasks.task import Step

        prepared = prepare_run(load_recipe(self.task, self.recipe, conformance_run.overrides))
        task, model = prepared.task, prepared.model
        collate = collate_for(task, prepared.tokenizer)
        for split, training in (("train", True), ("eval", False)):
            features = prepared.features[split]
            batch = collate([features[i] for i in range(min(4, len(features)))])
            rows = batch_size(batch)
            model.train(training)
            with torch.set_grad_enabled(training):
                step = task.forward(model, batch)
            assert isinstance(step, Step), f"{split}: forward returned {type(step).__name__}"
            assert tuple(step.loss.shape) == (rows,), (
                f"{split}: loss has shape {tuple(step.loss.shape)}, expected ({rows},)"
            )
            assert torch.isfinite(step.loss).all(), f"{split}: a loss is not finite"
            assert step.loss.requires_grad == training, (
                f"{split}: gradient {step.loss.requires_grad}"
            )
            if step.count is not None:
                assert tuple(step.count.shape) == (rows,), f"{split}: count shape"
                assert bool((step.count >= 0).all()), f"{split}: a negative target count"
            for key, value in step.outputs.items():
                assert len(value) == rows, f"{split}: output {key} has {len(value)} rows"

    def test_predictions_add_up_to_the_metrics(self, conformance_run: ConformanceRun) -> None:
        """`aggregate` of the summed statistics of `predictions.jsonl` gives the run's metrics.

        Intervals and ``nlptasks compare`` use exactly the reported numbers."""
        from nlptasks.evaluation.bootstrap import point_estimate

        rows = [
            json.loads(line)
            for line in (conformance_run.run_dir / "predictions.jsonl").read_text().splitlines()
        ]
        found = point_estimate([row["statistics"] for row in rows], self._task().aggregate)
        reported = {k: v for k, v in conformance_run.metrics.items() if k != "loss"}
        assert set(found) == set(reported), f"aggregate gives {sorted(found)}"
        assert dict(found) == pytest.approx(reported, rel=1e-9, nan_ok=True)

    def test_eval_reports_the_declared_metrics(
        self, conformance_run: ConformanceRun, tmp_path: Path
    ) -> None:
        """`nlptasks.evaluate` gives `loss` and the declared metrics, in range, equal to the
        run's."""
        import nlptasks
        from nlptasks.task import declared_metrics

        # A copy: evaluating RUN/model adds to that run's card, which other checks read.
        copy = shutil.copytree(conformance_run.run_dir, tmp_path / "run")
        result = nlptasks.evaluate(self.task, str(copy / "model"))
        specs = declared_metrics(self._task())
        assert set(result.metrics) == set(specs), (
            f"eval reported {sorted(result.metrics)}, the task declares {sorted(specs)}"
        )
        for name, value in result.metrics.items():
            spec = specs[name]
            if math.isnan(value) and name in self.nan_metrics:
                continue
            assert not math.isnan(value), (
                f"{name} is NaN on the tiny data (a 0/0?); list it in nan_metrics if it may be"
            )
            assert spec.low <= value <= spec.high, (
                f"{name}={value} is outside its declared range [{spec.low}, {spec.high}]"
            )
        # Evaluating the saved model again gives what the run reported for it.
        assert result.metrics == pytest.approx(conformance_run.metrics, rel=1e-5, nan_ok=True)
        assert result.num_examples > 0

    def test_results_follow_the_schema(self, conformance_run: ConformanceRun) -> None:
        """`results.json` follows the shipped JSON Schema."""
        from nlptasks.runs.directory import schema_problems

        results = json.loads((conformance_run.run_dir / "results.json").read_text())
        assert schema_problems(results) == []

    def test_confidence_intervals_and_predictions(self, conformance_run: ConformanceRun) -> None:
        """Each metric inside its interval; a `predictions.jsonl` row per eval example.

        (Or per feature, for a task that scores features, such as packed text blocks.)"""
        results = json.loads((conformance_run.run_dir / "results.json").read_text())
        found = results["confidence_intervals"]["eval"]
        expected = set(conformance_run.metrics)
        assert expected <= set(found), f"intervals for {sorted(found)}, expected {expected}"
        for name in expected:
            value, (low, high) = conformance_run.metrics[name], found[name]
            if math.isfinite(value):
                assert low <= value + 1e-9 and value <= high + 1e-9, (
                    f"{name}: {value} [{low}, {high}]"
                )
        lines = (conformance_run.run_dir / "predictions.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        # One per example, or per feature where those are the unit (packed text blocks).
        data = results["data"]
        assert len(rows) in (data["eval_examples"], data["eval_features"]), len(rows)
        assert [row["index"] for row in rows] == list(range(len(rows)))
        assert all(isinstance(row["statistics"], dict) for row in rows)

    def test_predict_returns_json_records(self, conformance_run: ConformanceRun) -> None:
        """A JSON-safe dict per record, the same alone as in a padded batch."""
        import nlptasks

        task = self._task()
        records = conformance_run.data.records or [
            {field: "a tiny test input" for field in task.info.input_fields}
        ]
        for record in records:
            fields = set(task.info.input_fields)
            assert set(record) >= fields, f"record {record} lacks input fields"
        predictions = nlptasks.predict(self.task, str(conformance_run.run_dir / "model"), records)
        assert len(predictions) == len(records)
        for prediction in predictions:
            assert isinstance(prediction, dict) and prediction, "one non-empty dict per record"
            assert json.loads(json.dumps(prediction, allow_nan=False)) == prediction
        # Each record alone gives what it gave in the batch: the batch kept the input order,
        # and padding (records of different lengths) changed no answer.
        for record, batched in zip(records, predictions, strict=True):
            [alone] = nlptasks.predict(self.task, str(conformance_run.run_dir / "model"), [record])
            _assert_same(alone, batched, f"predict({record!r}) alone")

    def test_explanations_fit_the_records(self, conformance_run: ConformanceRun) -> None:
        """`explain` gives one JSON explanation per record, its tokens and attributions of
        equal length, every number finite (a task without `Explains` passes: nothing to check).

        It passes rather than skips so that "every check passed" keeps meaning a conforming
        task: explanations are optional. The explanations are those of ``predict``'s own
        predictions, from the task's methods directly: a defect of ``predict`` does not fail
        this check."""
        import torch

        from nlptasks.explain import explanation_problems
        from nlptasks.runner import model_recipe
        from nlptasks.task import Explains

        task = self._task()
        can_explain = isinstance(task, Explains)  # (no narrowing: task is a whole Task)
        if not can_explain:
            return
        model_dir = str(conformance_run.run_dir / "model")
        records = conformance_run.data.records or [
            {field: "a tiny test input" for field in task.info.input_fields}
        ]
        recipe = model_recipe(self.task, model_dir, None)
        model, tokenizer = task.build_model(model_dir, recipe, trained=True)
        model.eval()
        with torch.inference_mode():
            predictions = task.predict(model, tokenizer, records, recipe)
        explanations = task.explain(model, tokenizer, records, recipe, predictions)
        assert isinstance(explanations, list) and len(explanations) == len(records), (
            f"explain gave {len(explanations)} explanations for {len(records)} records"
        )
        for number, explanation in enumerate(explanations, 1):
            problems = explanation_problems(explanation)
            assert not problems, f"explanation {number}: {'; '.join(problems)}"

    def test_saved_model_reloads_with_auto_classes(self, conformance_run: ConformanceRun) -> None:
        """The pipeline tag's Auto class loads the weights `build_model(..., trained=True)`
        gives."""
        import torch
        import transformers

        from nlptasks.recipes import load_recipe

        model_dir = str(conformance_run.run_dir / "model")
        task = self._task()
        name = self._auto_class(model_dir)
        plain = getattr(transformers, name).from_pretrained(model_dir)
        transformers.AutoTokenizer.from_pretrained(model_dir)
        recipe = load_recipe(self.task, self.recipe, conformance_run.overrides)
        ours, _ = task.build_model(model_dir, recipe, trained=True)
        theirs = plain.state_dict()
        for key, tensor in ours.state_dict().items():
            assert key in theirs, f"{name} does not load weight {key}"
            assert torch.equal(tensor.float(), theirs[key].float()), f"{key} differs"

    def test_export_loads_with_auto_classes(
        self, conformance_run: ConformanceRun, tmp_path: Path
    ) -> None:
        """`nlptasks export` writes a folder the Auto classes load.

        The card and results lie beside the safetensors weights."""
        import transformers

        from nlptasks.runs.export import export

        folder = export(conformance_run.run_dir, tmp_path / "exported")
        names = {p.name for p in folder.iterdir()}
        assert {"README.md", "results.json", "config.json"} <= names, names
        assert any(n.endswith(".safetensors") for n in names) and not any(
            n.endswith(".bin") for n in names
        )
        getattr(transformers, self._auto_class(folder)).from_pretrained(folder)
        transformers.AutoTokenizer.from_pretrained(folder)

    def test_model_card_parses(self, conformance_run: ConformanceRun) -> None:
        """`huggingface_hub.ModelCard` reads the card, its tag and metrics."""
        from huggingface_hub import ModelCard

        card = ModelCard.load(conformance_run.run_dir / "README.md")
        task = self._task()
        assert card.data.pipeline_tag == task.info.pipeline_tag
        results = card.data.eval_results or []
        reported = {r.metric_type: r.metric_value for r in results}
        expected = {
            k: v for k, v in conformance_run.metrics.items() if k != "loss" and math.isfinite(v)
        }
        assert set(reported) == set(expected), f"card metrics {reported}, run {expected}"
        for name, value in expected.items():
            assert reported[name] == pytest.approx(value, abs=1e-4)
        assert all(r.task_type == task.info.pipeline_tag for r in results)

    def test_two_process_eval_equals_one_process(
        self, conformance_run: ConformanceRun, tmp_path: Path
    ) -> None:
        """A 2-process `torchrun` evaluation gives the same metrics."""
        import torch.distributed

        if not torch.distributed.is_available():
            pytest.skip("torch has no torch.distributed here")
        model_dir = str(conformance_run.run_dir / "model")
        two = json.loads(_eval_in_processes(self, model_dir, 2))
        # The run's final evaluation is one process's (test_eval_reports_the_declared_metrics
        # checks that it equals a fresh one).
        one = conformance_run.metrics
        assert set(two) == set(one)
        assert two == pytest.approx(one, rel=1e-5, nan_ok=True)


def checks() -> list[tuple[str, str]]:
    """The kit's checks, in order: each test's name and the first paragraph of its docstring
    (what docs/plugins.md and CONTRIBUTING.md list; tests/test_docs.py keeps them equal)."""
    found = []
    for name, value in vars(TaskConformance).items():
        if name.startswith("test_") and callable(value):
            doc = inspect.getdoc(value) or ""
            found.append((name, " ".join(doc.split("\n\n", 1)[0].split())))
    return found


def checks_table() -> str:
    """:func:`checks` as the Markdown table the docs show."""
    rows = "".join(f"| `{name}` | {summary} |\n" for name, summary in checks())
    return "| test | checks |\n|---|---|\n" + rows


def batch_size(batch: Any) -> int:
    """Examples in a collated batch: the first dimension of its first tensor."""
    for value in batch.values():
        if hasattr(value, "shape") and value.ndim > 0:
            return int(value.shape[0])
    raise AssertionError("collate returned no tensor")


def _assert_same(alone: Any, batched: Any, where: str) -> None:
    """Equal, floats within 1e-6: a padded batch may differ in the last float bits only."""
    if isinstance(alone, float) and isinstance(batched, float):
        assert alone == pytest.approx(batched, abs=1e-6), f"{where}: {alone} != {batched}"
    elif isinstance(alone, dict) and isinstance(batched, dict):
        assert alone.keys() == batched.keys(), f"{where}: keys {alone.keys()} != {batched.keys()}"
        for key in alone:
            _assert_same(alone[key], batched[key], f"{where}[{key!r}]")
    elif isinstance(alone, list) and isinstance(batched, list):
        assert len(alone) == len(batched), f"{where}: {alone} != {batched}"
        for i, (a, b) in enumerate(zip(alone, batched, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert alone == batched, f"{where}: {alone!r} != {batched!r} (in the batch)"


def _eval_in_processes(kit: TaskConformance, model_dir: str, processes: int) -> str:
    """``nlptasks eval --json`` of the model under ``torchrun`` with only the plugin under
    test loaded, as a fresh process (the way a user's multi-process evaluation runs)."""
    args = [kit.task, model_dir, "--plugin", kit.plugin_spec()]
    if kit.builtins:
        args.append("--builtins")
    done = run_nlptasks(*args, processes=processes, module="nlptasks.testing.conformance")
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"only the main process prints: {done.stdout!r}"
    return lines[0]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m nlptasks.testing.conformance TASK MODEL_DIR --plugin SPEC``: evaluate with only
    that plugin loaded; the main process prints the metrics as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m nlptasks.testing.conformance")
    parser.add_argument("task")
    parser.add_argument("model_dir")
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--builtins", action="store_true")
    args = parser.parse_args(argv)

    from nlptasks.plugins import manager as plugins
    from nlptasks.runner import evaluate_model

    with plugins.isolated([args.plugin], builtins=args.builtins):
        result = evaluate_model(args.task, args.model_dir, None, [])
    if result.main_process:
        print(json.dumps(result.metrics))


if __name__ == "__main__":
    main()
