"""Extractive question answering (SQuAD v1.1 and v2.0) with any encoder and a fast tokenizer."""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from nlptasks import (
    DataConfig,
    DataError,
    EvalContext,
    MetricSpec,
    ModelError,
    Recipe,
    Scores,
    Step,
    TaskInfo,
    fingerprint,
    load_pretrained,
    pad_features,
    position_limit,
    predict_batches,
    tokenizer_digest,
)
from nlptasks.builtins.qa.data import normalise_split, read_examples
from nlptasks.builtins.qa.features import NO_OFFSET, WindowSettings, check_fits, make_windows
from nlptasks.builtins.qa.metrics import question_statistics, squad_metrics
from nlptasks.builtins.qa.postprocess import Answer, best_answers, window_spans

# Bump when preprocessing changes so that cached tokenisations are not reused.
PREPROCESS_VERSION = 1
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class QaOptions:
    """The qa task's settings (the recipe's ``options:`` section); ``data.max_length`` is not
    used: windows are ``max_length`` tokens."""

    max_length: int = 384
    """Tokens per window (question, context and special tokens); capped by the model."""
    doc_stride: int = 128
    """Tokens that consecutive windows of a long context share."""
    max_question_length: int = 64
    """Longer questions are cut to their first N tokens (counted, with a warning)."""
    n_best: int = 20
    """Best spans kept per window and per example."""
    max_answer_length: int = 30
    """Longest answer, in tokens."""
    version_2_with_negative: bool = False
    """SQuAD 2.0: questions may have no answer (empty ``answers``); the model may say so."""
    null_score_diff_threshold: float = 0.0
    """With version 2: answer "no answer" when its score beats the best span's by more."""
    bad_answers: Literal["error", "skip"] = "error"
    """An ``answer_start`` that does not point at its text: stop with an error naming the
    question, or skip the question (the number skipped is reported)."""
    id_column: str = "id"
    title_column: str = "title"
    context_column: str = "context"
    question_column: str = "question"
    answers_column: str = "answers"

    def problems(self) -> list[str]:
        found = []
        for name in ("max_length", "doc_stride", "max_question_length", "n_best"):
            if getattr(self, name) < 1:
                found.append(f"'options.{name}' must be at least 1, not {getattr(self, name)}")
        if self.max_answer_length < 1:
            found.append(
                f"'options.max_answer_length' must be at least 1, not {self.max_answer_length}"
            )
        if not math.isfinite(self.null_score_diff_threshold):
            found.append("'options.null_score_diff_threshold' must be a finite number")
        # Whether doc_stride and the question fit a window depends on the tokenizer's special
        # tokens and the model's positions: checked with the model (features.check_fits).
        return found


V1_METRICS = (
    MetricSpec("exact_match", True, 0.0, 100.0, description="SQuAD exact match (%)"),
    MetricSpec("f1", True, 0.0, 100.0, description="SQuAD token F1 (%)"),
)
V2_METRICS = V1_METRICS + (
    MetricSpec("HasAns_exact", True, 0.0, 100.0, description="exact match, answerable (%)"),
    MetricSpec("HasAns_f1", True, 0.0, 100.0, description="F1, answerable questions (%)"),
    MetricSpec("NoAns_exact", True, 0.0, 100.0, description="exact match, unanswerable (%)"),
    MetricSpec("NoAns_f1", True, 0.0, 100.0, description="F1, unanswerable questions (%)"),
)


class QaTask:
    """Fine-tunes any encoder with a span head: windows in, character spans out."""

    # SQuAD 2.0 recipes (options.version_2_with_negative) report V2_METRICS: prepare_data
    # sets them on the instance.
    info: TaskInfo = TaskInfo(
        name="qa",
        pipeline_tag="question-answering",
        metrics=V1_METRICS,
        input_fields=("question", "context"),
        options=QaOptions,
        default_recipe="minilm",
    )

    def __init__(self) -> None:
        self.pad_token_id = 0
        self.tokenizer_digest = ""
        self.max_positions: int | None = None
        self.options = QaOptions()

    # ------------------------------------------------------------------------------- data
    def read_source(
        self, recipe: Recipe, source: str, load: Callable[[], datasets.Dataset | None]
    ) -> datasets.Dataset | None:
        """Official SQuAD JSON files (one row per file) become one row per question, before
        eval data is held out and ``data.max_*_examples`` caps the sizes."""
        loaded = load()
        return None if loaded is None else read_examples(loaded, source)

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        options: QaOptions = recipe.options
        self.options = options
        v2 = options.version_2_with_negative
        self.info = dataclasses.replace(QaTask.info, metrics=V2_METRICS if v2 else V1_METRICS)
        columns = {
            role: getattr(options, f"{role}_column")
            for role in ("id", "title", "context", "question", "answers")
        }
        prepared = {
            name: normalise_split(split, name, columns, options.bad_answers)
            for name, split in splits.items()
        }
        if recipe.data.max_length != DataConfig().max_length:
            warnings.warn(
                f"data.max_length ({recipe.data.max_length}) is not used by qa: windows are "
                f"options.max_length ({options.max_length}) tokens.",
                stacklevel=2,
            )
        eval_split = prepared.get("eval")
        if v2 and eval_split is not None and all(a["text"] for a in eval_split["answers"]):
            warnings.warn(
                "options.version_2_with_negative is set but the eval data has no "
                "unanswerable question: NoAns_exact and NoAns_f1 are undefined (null).",
                stacklevel=2,
            )
        if not v2:
            for name, split in prepared.items():
                unanswerable = sum(1 for answers in split["answers"] if not answers["text"])
                if unanswerable:
                    raise DataError(
                        f"The {name} data has {unanswerable} questions without an answer "
                        f"(SQuAD 2.0). Set options.version_2_with_negative=true to train and "
                        f"score unanswerable questions."
                    )
        return datasets.DatasetDict(prepared)

    # ------------------------------------------------------------------------------ model
    def build_model(
        self, model_path: str, recipe: Recipe, trained: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        name = self.info.name
        tokenizer = load_pretrained(model_path, AutoTokenizer.from_pretrained, name)
        # A base model whose span head does not fit gets a new one; a trained one keeps its.
        load = functools.partial(
            AutoModelForQuestionAnswering.from_pretrained, ignore_mismatched_sizes=not trained
        )
        model = load_pretrained(model_path, load, name)
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(
                f"Model '{model_path}' has a slow tokenizer; question answering needs a fast "
                f"one (its offset mapping finds answers in the context). Use a model with a "
                f"tokenizer.json."
            )
        self.pad_token_id = tokenizer.pad_token_id or 0
        self.tokenizer_digest = tokenizer_digest(tokenizer)
        self.max_positions = position_limit(model, tokenizer)
        if not trained:  # before any tokenising: windows that cannot slide fail now
            self._windows(tokenizer, recipe)
        return model, tokenizer

    def _windows(self, tokenizer: Any, recipe: Recipe) -> WindowSettings:
        """The recipe's windows, no longer than the model's position embeddings; a
        ConfigError with the values that fit when they cannot slide over a context."""
        options: QaOptions = recipe.options
        length = min(options.max_length, self.max_positions or options.max_length)
        settings = WindowSettings(length, options.doc_stride, options.max_question_length)
        check_fits(tokenizer, settings, recipe.name or "recipe")
        return settings

    # ------------------------------------------------------------------------ features
    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        self.options = recipe.options
        settings = self._windows(tokenizer, recipe)
        truncated = [0]

        def windows(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
            made = make_windows(
                tokenizer,
                batch["question"],
                batch["context"],
                settings,
                answers=batch["answers"],
                example_indices=indices,
                names=[f"Question '{qid}'" for qid in batch["id"]],
            )
            truncated[0] += made.truncated_questions
            return made.columns

        fp = fingerprint(dataset._fingerprint, self.tokenizer_digest, settings, PREPROCESS_VERSION)
        features = dataset.map(
            windows,
            batched=True,
            with_indices=True,
            remove_columns=dataset.column_names,
            new_fingerprint=fp,
            desc="Windowing",
        )
        _warn_truncated(truncated[0], len(dataset), settings)
        return features

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Offsets are padded with -1 (outside the context): no span starts or ends there."""
        pads = {"input_ids": self.pad_token_id, "offset_start": NO_OFFSET, "offset_end": NO_OFFSET}
        return pad_features(features, pads)

    # --------------------------------------------------------------------------- step
    def forward(self, model: torch.nn.Module, batch: Any) -> Step:
        """Per window: the mean of the start and the end cross-entropy (transformers' QA
        heads); in evaluation also its n-best spans and "no answer" score."""
        start_logits, end_logits = _logits(model, batch)
        start = F.cross_entropy(start_logits, batch["start_positions"], reduction="none")
        end = F.cross_entropy(end_logits, batch["end_positions"], reduction="none")
        if model.training:
            return Step(loss=(start + end) / 2)
        spans = window_spans(
            start_logits, end_logits, batch, self.options.n_best, self.options.max_answer_length
        )
        return Step(loss=(start + end) / 2, outputs=spans)

    def score(self, outputs: Any, context: EvalContext) -> Scores:
        """Per question: its answer and gold answers, and exact match and F1 (0..1), split
        into answerable and unanswerable questions for SQuAD 2.0."""
        options: QaOptions = context.recipe.options
        v2 = options.version_2_with_negative
        examples = context.examples
        answers = _answers(outputs, context.features["example_index"], examples["context"], options)
        records, statistics = [], []
        rows = zip(examples["id"], examples["question"], examples["answers"], answers, strict=True)
        for qid, question, gold, answer in rows:
            golds = list(gold["text"])
            records.append(
                {"id": qid, "question": question, "prediction": answer.text, "references": golds}
            )
            statistics.append(question_statistics(answer.text, golds, v2))
        return Scores(records, statistics)

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Exact match and F1 in percent, as the official SQuAD scripts; with SQuAD 2.0
        statistics also HasAns_/NoAns_ (NaN for a group with no question)."""
        return squad_metrics(sums)

    # ------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        options: QaOptions = recipe.options
        # Records are checked already (the core refuses missing, non-text and empty fields).
        questions = [str(r["question"]) for r in records]
        contexts = [str(r["context"]) for r in records]
        settings = self._windows(tokenizer, recipe)
        made = make_windows(tokenizer, questions, contexts, settings)
        _warn_truncated(made.truncated_questions, len(questions), settings)
        windows = made.columns
        features = [{k: windows[k][i] for k in windows} for i in range(len(windows["length"]))]
        found: dict[str, list[torch.Tensor]] = {}
        order: list[int] = []  # the windows in the order their spans were found
        for indices, batch in predict_batches(
            features, self.collate, recipe.train.eval_batch_size, next(model.parameters()).device
        ):
            spans = window_spans(
                *_logits(model, batch), batch, options.n_best, options.max_answer_length
            )
            for key, value in spans.items():
                found.setdefault(key, []).append(value.cpu())
            order.extend(indices)
        joined = {key: torch.cat(parts) for key, parts in found.items()}
        example_index = [windows["example_index"][w] for w in order]
        return [_as_record(answer) for answer in _answers(joined, example_index, contexts, options)]

    def explain(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        predictions: Sequence[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """IG of each answer's start and end logits to its window's tokens (``Explains``)."""
        from nlptasks.builtins.qa.explain import explain_spans

        settings = self._windows(tokenizer, recipe)
        return explain_spans(model, tokenizer, records, predictions, settings)

    def model_card(self) -> dict[str, Any]:
        return {"answers": "character spans of the context (extractive)"}


def _logits(model: torch.nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    outputs = model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS})
    return outputs.start_logits.float(), outputs.end_logits.float()


def _answers(
    spans: Mapping[str, Any],
    example_index: Sequence[int],
    contexts: Sequence[str],
    options: QaOptions,
) -> list[Answer]:
    return best_answers(
        spans,
        example_index,
        contexts,
        options.n_best,
        options.version_2_with_negative,
        options.null_score_diff_threshold,
    )


def _warn_truncated(count: int, total: int, settings: WindowSettings) -> None:
    if count:
        warnings.warn(
            f"Cut {count} of {total} questions to their first {settings.max_question_length} "
            f"tokens (options.max_question_length).",
            stacklevel=3,
        )


def _as_record(answer: Answer) -> dict[str, Any]:
    return {"answer": answer.text, "score": answer.score, "start": answer.start, "end": answer.end}
