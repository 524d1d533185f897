"""Extractive question answering (SQuAD v1.1 and v2.0) with any encoder and a fast tokenizer."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from nlptasks import (
    DataConfig,
    DataError,
    EvalContext,
    ExampleStatistics,
    MetricSpec,
    ModelError,
    Recipe,
    fingerprint,
    length_sorted_batches,
    load_pretrained,
    position_limit,
    tokenizer_digest,
)
from nlptasks.builtins.qa.data import normalise_split, read_examples
from nlptasks.builtins.qa.features import NO_OFFSET, WindowSettings, check_fits, make_windows
from nlptasks.builtins.qa.metrics import question_scores, squad_scores
from nlptasks.builtins.qa.postprocess import Answer, SpanCandidates

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

    name: ClassVar[str] = "qa"
    default_recipe: ClassVar[str] = "minilm"
    # SQuAD 2.0 recipes (options.version_2_with_negative) report V2_METRICS: prepare_data
    # sets them on the instance.
    metrics: tuple[MetricSpec, ...] = V1_METRICS
    main_metric: ClassVar[str] = "f1"
    input_fields: ClassVar[tuple[str, ...]] = ("question", "context")
    options_class: ClassVar[type] = QaOptions
    pipeline_tag: ClassVar[str] = "question-answering"

    def __init__(self) -> None:
        self.pad_token_id = 0
        self.tokenizer_digest = ""
        self.max_positions: int | None = None
        self.metrics = V1_METRICS

    # ------------------------------------------------------------------------------- data
    def read_examples(self, dataset: datasets.Dataset, source: str) -> datasets.Dataset:
        """Official SQuAD JSON files (one row per file) become one row per question, before
        eval data is held out and ``data.max_*_examples`` caps the sizes."""
        return read_examples(dataset, source)

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        options: QaOptions = recipe.options
        self.metrics = V2_METRICS if options.version_2_with_negative else V1_METRICS
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
        if (
            options.version_2_with_negative
            and eval_split is not None
            and all(answers["text"] for answers in eval_split["answers"])
        ):
            warnings.warn(
                "options.version_2_with_negative is set but the eval data has no "
                "unanswerable question: NoAns_exact and NoAns_f1 are undefined (null).",
                stacklevel=2,
            )
        if not options.version_2_with_negative:
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
    def build_model(self, model_path: str, recipe: Recipe) -> tuple[torch.nn.Module, Any]:
        tokenizer = load_pretrained(model_path, AutoTokenizer.from_pretrained, self.name)
        model = load_pretrained(
            model_path,
            lambda ref, **kw: AutoModelForQuestionAnswering.from_pretrained(
                ref, ignore_mismatched_sizes=True, **kw
            ),
            self.name,
        )
        self._remember(model, tokenizer, model_path)
        # Before any tokenising: windows that cannot slide fail now, with the values that fit.
        check_fits(tokenizer, self.window_settings(recipe.options), recipe.name or "recipe")
        return model, tokenizer

    def load_trained(self, model_dir: str) -> tuple[torch.nn.Module, Any]:
        tokenizer = load_pretrained(model_dir, AutoTokenizer.from_pretrained, self.name)
        model = load_pretrained(model_dir, AutoModelForQuestionAnswering.from_pretrained, self.name)
        self._remember(model, tokenizer, model_dir)
        model.eval()
        return model, tokenizer

    def _remember(self, model: torch.nn.Module, tokenizer: Any, where: str) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(
                f"Model '{where}' has a slow tokenizer; question answering needs a fast one "
                f"(its offset mapping finds answers in the context). Use a model with a "
                f"tokenizer.json."
            )
        self.pad_token_id = tokenizer.pad_token_id or 0
        self.tokenizer_digest = tokenizer_digest(tokenizer)
        self.max_positions = position_limit(model, tokenizer)

    def window_settings(self, options: QaOptions) -> WindowSettings:
        """The recipe's windows, no longer than the model's position embeddings."""
        length = options.max_length
        if self.max_positions:
            length = min(length, self.max_positions)
        return WindowSettings(length, options.doc_stride, options.max_question_length)

    # ------------------------------------------------------------------------ features
    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        settings = self.window_settings(recipe.options)
        check_fits(tokenizer, settings, recipe.name or "recipe")
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
        if truncated[0]:
            warnings.warn(
                f"Cut {truncated[0]} of {len(dataset)} questions to their first "
                f"{settings.max_question_length} tokens (options.max_question_length).",
                stacklevel=2,
            )
        return features

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        batch: dict[str, torch.Tensor] = {}
        for key, pad in zip(MODEL_INPUTS, (self.pad_token_id, 0, 0), strict=True):
            if key in features[0]:
                batch[key] = torch.tensor(
                    [f[key] + [pad] * (longest - len(f[key])) for f in features]
                )
        for key in ("start_positions", "end_positions"):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features])
        return batch

    # ---------------------------------------------------------------------------- loss
    def count_targets(self, batch: Any) -> int:
        return int(batch["input_ids"].shape[0])

    def _logits(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS})
        return outputs.start_logits.float(), outputs.end_logits.float()

    @staticmethod
    def _window_losses(
        start_logits: torch.Tensor, end_logits: torch.Tensor, batch: Any
    ) -> torch.Tensor:
        # transformers' QA heads: the mean of the start and the end cross-entropy.
        start = F.cross_entropy(start_logits, batch["start_positions"], reduction="none")
        end = F.cross_entropy(end_logits, batch["end_positions"], reduction="none")
        return (start + end) / 2

    def compute_loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return self._window_losses(*self._logits(model, batch), batch).sum()

    def eval_step(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        start_logits, end_logits = self._logits(model, batch)
        return {
            "start_logits": start_logits,
            "end_logits": end_logits,
            "loss": self._window_losses(start_logits, end_logits, batch),
        }

    def new_metrics(self, context: EvalContext) -> QaMetrics:
        return QaMetrics(context)

    def metrics_from_statistics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Exact match and F1 in percent, as the official SQuAD scripts; with SQuAD 2.0
        statistics also HasAns_/NoAns_ (NaN for a group with no question)."""

        def percent(value: float, questions: float) -> float:
            return 100.0 * value / questions if questions else float("nan")

        found = {
            "exact_match": percent(sums.get("exact", 0.0), sums.get("questions", 0.0)),
            "f1": percent(sums.get("f1", 0.0), sums.get("questions", 0.0)),
        }
        for group, prefix in (("has", "HasAns"), ("no", "NoAns")):
            if f"{group}/questions" in sums:
                questions = sums[f"{group}/questions"]
                found[f"{prefix}_exact"] = percent(sums[f"{group}/exact"], questions)
                found[f"{prefix}_f1"] = percent(sums[f"{group}/f1"], questions)
        return found

    # ------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
    ) -> list[dict[str, Any]]:
        options: QaOptions = recipe.options
        # Records are checked already (the core refuses missing, non-text and empty fields).
        questions = [str(r["question"]) for r in records]
        contexts = [str(r["context"]) for r in records]
        settings = self.window_settings(options)
        check_fits(tokenizer, settings, recipe.name or "recipe")
        made = make_windows(tokenizer, questions, contexts, settings)
        if made.truncated_questions:
            warnings.warn(
                f"Cut {made.truncated_questions} of {len(questions)} questions to their first "
                f"{settings.max_question_length} tokens (options.max_question_length).",
                stacklevel=2,
            )
        windows = made.columns
        candidates = SpanCandidates(options.n_best, options.max_answer_length)
        model.eval()
        device = next(model.parameters()).device
        for indices in length_sorted_batches(windows["length"], recipe.train.eval_batch_size):
            rows = [{k: windows[k][i] for k in windows} for i in indices]
            batch = {k: v.to(device) for k, v in self.collate(rows).items()}
            start_logits, end_logits = self._logits(model, batch)
            candidates.add(
                torch.tensor([windows["example_index"][i] for i in indices]),
                start_logits.cpu(),
                end_logits.cpu(),
                _offsets([windows["offset_start"][i] for i in indices], start_logits.shape[1]),
                _offsets([windows["offset_end"][i] for i in indices], start_logits.shape[1]),
                torch.tensor([windows["cls_index"][i] for i in indices]),
            )
        answers = [
            candidates.answer(
                i, context, options.version_2_with_negative, options.null_score_diff_threshold
            )
            for i, context in enumerate(contexts)
        ]
        return [_as_record(answer) for answer in answers]

    def model_card_info(self) -> dict[str, Any]:
        return {"answers": "character spans of the context (extractive)"}


class QaMetrics:
    """Streams window logits into each example's n-best spans; SQuAD EM/F1 at the end.

    ``predictions`` holds the answer of each question id after ``compute``."""

    def __init__(self, context: EvalContext) -> None:
        options: QaOptions = context.recipe.options
        self.options = options
        self.candidates = SpanCandidates(options.n_best, options.max_answer_length)
        self._windows = context.features.select_columns(
            ["example_index", "offset_start", "offset_end", "cls_index"]
        )
        self.predictions: dict[str, Answer] = {}
        self._golds: dict[str, list[str]] = {}

    def add_batch(self, outputs: Mapping[str, torch.Tensor]) -> None:
        rows = self._windows[outputs["index"].tolist()]
        width = outputs["start_logits"].shape[1]
        self.candidates.add(
            torch.tensor(rows["example_index"]),
            outputs["start_logits"],
            outputs["end_logits"],
            _offsets(rows["offset_start"], width),
            _offsets(rows["offset_end"], width),
            torch.tensor(rows["cls_index"]),
        )

    def compute(self, context: EvalContext) -> dict[str, float]:
        examples = context.examples
        golds: dict[str, list[str]] = {}
        for i, (qid, text, answers) in enumerate(
            zip(examples["id"], examples["context"], examples["answers"], strict=True)
        ):
            self.predictions[qid] = self.candidates.answer(
                i,
                text,
                self.options.version_2_with_negative,
                self.options.null_score_diff_threshold,
            )
            golds[qid] = list(answers["text"])
        predicted = {qid: answer.text for qid, answer in self.predictions.items()}
        self._golds = golds
        return squad_scores(predicted, golds, self.options.version_2_with_negative)

    def example_statistics(self, context: EvalContext) -> ExampleStatistics:
        """Per question: its answer and gold answers, and exact match and F1 (0..1), split
        into answerable and unanswerable questions for SQuAD 2.0."""
        v2 = self.options.version_2_with_negative
        records, statistics = [], []
        for qid, question in zip(context.examples["id"], context.examples["question"], strict=True):
            answer, golds = self.predictions[qid], self._golds[qid]
            em, f1 = question_scores(answer.text, golds, v2)
            records.append(
                {"id": qid, "question": question, "prediction": answer.text, "references": golds}
            )
            counts = {"questions": 1.0, "exact": em, "f1": f1}
            if v2:
                group = "has" if golds else "no"
                counts.update({f"{group}/questions": 1.0, f"{group}/exact": em, f"{group}/f1": f1})
            statistics.append(counts)
        return ExampleStatistics(records, statistics)


def _offsets(rows: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """Offsets of windows as one (B, width) tensor, -1 past each window's end."""
    table = torch.full((len(rows), width), NO_OFFSET, dtype=torch.long)
    for b, row in enumerate(rows):
        n = min(len(row), width)
        table[b, :n] = torch.tensor(row[:n], dtype=torch.long)
    return table


def _as_record(answer: Answer) -> dict[str, Any]:
    return {"answer": answer.text, "score": answer.score, "start": answer.start, "end": answer.end}
