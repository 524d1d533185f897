"""Sequence classification: text (or a text pair) -> one of N labels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from nlptasks import (
    DataError,
    EvalContext,
    MetricSpec,
    Recipe,
    Scores,
    Step,
    TaskInfo,
    collate_for,
    fingerprint,
    load_pretrained,
    position_limit,
    predict_batches,
    resolve_column,
    tokenizer_digest,
)
from nlptasks.builtins.sentiment.metrics import classification_metrics, label_statistics

TEXT_CANDIDATES = ("text", "sentence", "content", "review")
# Bump when preprocessing changes so that cached tokenisations are not reused.
PREPROCESS_VERSION = 1


@dataclass
class SentimentOptions:
    """The sentiment task's settings (the recipe's ``options:`` section)."""

    text_column: str | None = None
    """Text column; when absent the first of text/sentence/content/review that exists."""
    text_pair_column: str | None = None
    """Second text of a pair (e.g. NLI hypotheses); none by default."""
    label_column: str = "label"
    label_names: list[str] | None = None
    """Names for integer labels 0..n-1 (kept in the model's id2label)."""

    def problems(self) -> list[str]:
        if self.label_names is not None and len(set(self.label_names)) != len(self.label_names):
            return ["'options.label_names' must not repeat a name (classes would merge)"]
        return []


class SentimentTask:
    """Fine-tunes any encoder with a classification head; labels live in the model config."""

    # An instance of a text-pair model declares the second text too (build_model).
    info: TaskInfo = TaskInfo(
        name="sentiment",
        pipeline_tag="text-classification",
        metrics=(
            MetricSpec("accuracy", greater_is_better=True, low=0.0, high=1.0),
            MetricSpec("macro_f1", greater_is_better=True, low=0.0, high=1.0),
        ),
        input_fields=("text",),
        options=SentimentOptions,
        default_recipe="minilm",
    )

    def __init__(self) -> None:
        self.label_names: list[str] = []
        self.tokenizer_digest = ""
        self.max_positions: int | None = None

    # ------------------------------------------------------------------------------- data
    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        cfg: SentimentOptions = recipe.options
        columns = {}
        for name, split in splits.items():
            text = resolve_column(split, cfg.text_column, TEXT_CANDIDATES, "options.text_column")
            pair = (
                resolve_column(split, cfg.text_pair_column, (), "options.text_pair_column")
                if cfg.text_pair_column
                else None
            )
            label = resolve_column(split, cfg.label_column, (), "options.label_column")
            for column, key in ((text, "options.text_column"), (pair, "options.text_pair_column")):
                _check_text_column(split, column, key)
            columns[name] = (text, pair, label)

        # Each distinct raw label (unique() reads one Arrow column) -> its label name.
        names_of = {
            name: {
                v: _label_text(v, split.features.get(columns[name][2]), cfg.label_names)
                for v in split.unique(columns[name][2])
            }
            for name, split in splits.items()
        }
        seen = {name: set(mapping.values()) for name, mapping in names_of.items()}
        if trained_model is not None:
            id2label = trained_model.config.id2label
            self.label_names = [id2label[i] for i in range(len(id2label))]
        elif cfg.label_names:
            self.label_names = list(cfg.label_names)
        else:
            raw_values = [v for mapping in names_of.values() for v in mapping]
            _check_one_label_kind(raw_values)
            self.label_names = _sorted_labels(seen.get("train") or seen["eval"])
        # The classes the training data really has (label_names may name more).
        in_train = sorted(seen.get("train", set()))
        if trained_model is None and "train" in seen and len(in_train) < 2:
            only = ", ".join(f"'{n}'" for n in in_train) or "none"
            raise DataError(
                f"The training data has one class ({only}); a classifier needs at least two. "
                f"Check options.label_column, or the file."
            )
        label2id = {label: i for i, label in enumerate(self.label_names)}

        prepared = {}
        for name, split in splits.items():
            unknown = sorted(seen[name] - set(label2id))
            if unknown:
                known = ", ".join(self.label_names)
                where = "the model" if trained_model is not None else "options.label_names"
                shown = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:37] + "..."
                raise DataError(
                    f"The {name} data has label '{shown}', which {where} does not know "
                    f"(it knows {known}). Use data with those labels"
                    + (" or fix options.label_names." if trained_model is None else ".")
                )
            ids = {raw: label2id[label_name] for raw, label_name in names_of[name].items()}
            prepared[name] = self._normalise(split, *columns[name], ids)
        return datasets.DatasetDict(prepared)

    def _normalise(
        self,
        split: datasets.Dataset,
        text: str,
        pair: str | None,
        label: str,
        ids: dict[Any, int],
    ) -> datasets.Dataset:
        """Columns text, [text_pair], labels (class ids); cached on disk by fingerprint.

        ``ids`` maps every raw label value in the split to its class id."""

        def normalise(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            out: dict[str, list[Any]] = {
                "text": [t if t is not None else "" for t in batch[text]],
                "labels": [ids[v] for v in batch[label]],
            }
            if pair:
                out["text_pair"] = [t if t is not None else "" for t in batch[pair]]
            return out

        # The whole raw value -> id mapping is in the key, or a stale cache could be read.
        fp = fingerprint(split._fingerprint, text, pair, label, sorted(ids.items(), key=repr), "v3")
        return split.map(
            normalise, batched=True, remove_columns=split.column_names, new_fingerprint=fp
        )

    # ------------------------------------------------------------------------------ model
    def build_model(
        self, model_path: str, recipe: Recipe, trained: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        tokenizer = load_pretrained(model_path, AutoTokenizer.from_pretrained, "sentiment")
        if trained:  # its head and labels are the model's own
            model = load_pretrained(
                model_path, AutoModelForSequenceClassification.from_pretrained, "sentiment"
            )
            id2label = model.config.id2label
            self.label_names = [id2label[i] for i in range(len(id2label))]
        else:
            model = load_pretrained(
                model_path,
                lambda ref, **kw: AutoModelForSequenceClassification.from_pretrained(
                    ref,
                    num_labels=len(self.label_names),
                    id2label=dict(enumerate(self.label_names)),
                    label2id={name: i for i, name in enumerate(self.label_names)},
                    problem_type="single_label_classification",
                    # A checkpoint that already has a head of another size gets a new one.
                    ignore_mismatched_sizes=True,
                    **kw,
                ),
                "sentiment",
            )
        self._remember(model, tokenizer)
        if recipe.options.text_pair_column:  # a pair model: predict records need both texts
            self.info = replace(self.info, input_fields=("text", "text_pair"))
        return model, tokenizer

    def _remember(self, model: torch.nn.Module, tokenizer: Any) -> None:
        # Digest now: a fast tokenizer's serialisation changes once it has truncated text,
        # which would change the cache key between runs.
        self.tokenizer_digest = tokenizer_digest(tokenizer)
        self.max_positions = position_limit(model, tokenizer)

    def _max_length(self, recipe: Recipe) -> int:
        # Longer inputs would not fit the model's position embeddings.
        if self.max_positions:
            return min(recipe.data.max_length, self.max_positions)
        return recipe.data.max_length

    # ------------------------------------------------------------------------ features
    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        max_length = self._max_length(recipe)
        has_pair = "text_pair" in dataset.column_names

        def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            encoded = tokenizer(
                batch["text"],
                batch["text_pair"] if has_pair else None,
                truncation=True,
                max_length=max_length,
            )
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            return dict(encoded)

        fp = fingerprint(
            dataset._fingerprint, self.tokenizer_digest, max_length, PREPROCESS_VERSION
        )
        return dataset.map(
            tokenize,
            batched=True,
            remove_columns=[c for c in ("text", "text_pair") if c in dataset.column_names],
            new_fingerprint=fp,
            desc="Tokenizing",
        )

    # --------------------------------------------------------------------------- step
    def forward(self, model: torch.nn.Module, batch: Any) -> Step:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        return Step(
            loss=F.cross_entropy(logits, batch["labels"], reduction="none"),
            outputs={"predictions": logits.argmax(dim=-1), "references": batch["labels"]},
        )

    def score(self, outputs: Any, context: EvalContext) -> Scores:
        """Per example: its text, predicted and gold label, and counts that add up to
        accuracy and each class's F1."""
        names, texts = self.label_names, context.examples["text"]
        # A datasets.Dataset, or a plain mapping of columns (the metric tests pass one).
        columns = getattr(context.examples, "column_names", None) or list(context.examples)
        seconds = context.examples["text_pair"] if "text_pair" in columns else [None] * len(texts)
        pairs = zip(outputs["predictions"].tolist(), outputs["references"].tolist(), strict=True)
        records, statistics = [], []
        for text, second, (predicted, gold) in zip(texts, seconds, pairs, strict=True):
            record = {"text": text, "prediction": names[predicted], "reference": names[gold]}
            if second is not None:  # a pair's example is both texts
                record = {"text": text, "text_pair": second, **record}
            records.append(record)
            statistics.append(label_statistics(names[predicted], names[gold]))
        return Scores(records, statistics)

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        return classification_metrics(sums)

    # ------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        texts = [str(record["text"]) for record in records]
        pairs = _text_pairs(records)
        max_length = self._max_length(recipe)  # as in evaluation: the same text, the same label
        # Tokenise once, unpadded; then batches of similar length padded only to their own
        # longest text (the pipeline pads every batch of 32 to its longest).
        features = _encode(tokenizer, texts, pairs, max_length)
        results: list[dict[str, Any]] = [{} for _ in texts]
        for indices, batch in predict_batches(
            features,
            collate_for(self, tokenizer),  # evaluation's padding
            recipe.train.eval_batch_size,
            next(model.parameters()).device,
        ):
            probabilities = model(**batch).logits.float().softmax(dim=-1).cpu()
            for i, row in zip(indices, probabilities.tolist(), strict=True):
                best = max(range(len(row)), key=row.__getitem__)
                results[i] = {
                    "text": texts[i],
                    **({"text_pair": pairs[i]} if pairs[i] is not None else {}),
                    "label": self.label_names[best],
                    "score": row[best],
                    "probabilities": dict(zip(self.label_names, row, strict=True)),
                }
        return results

    def explain(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        predictions: Sequence[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """IG of each predicted label's probability to the input tokens (``Explains``)."""
        from nlptasks.builtins.sentiment.explain import explain_classification

        texts = [str(record["text"]) for record in records]
        features = _encode(tokenizer, texts, _text_pairs(records), self._max_length(recipe))
        # The predicted label's class; None (a prediction without one): the model's argmax.
        targets = [
            self.label_names.index(p["label"]) if p.get("label") in self.label_names else None
            for p in predictions
        ]
        return explain_classification(model, tokenizer, features, targets, self.label_names)

    def model_card(self) -> dict[str, Any]:
        return {"labels": self.label_names}


def _text_pairs(records: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """Each record's second text (``text_pair``), None where it has none. A record's
    ``text_pair`` is never ignored: a pair model reads it (the runner makes sure a model trained
    on pairs gets one in every record)."""
    pairs: list[str | None] = []
    for number, record in enumerate(records, 1):
        pair = record.get("text_pair")
        if pair is not None and not isinstance(pair, str):
            raise DataError(
                f"Input {number} has a 'text_pair' that is {type(pair).__name__}, not text. "
                f"Give a string."
            )
        pairs.append(pair)
    return pairs


def _encode(
    tokenizer: Any, texts: list[str], pairs: list[str | None], max_length: int
) -> list[dict[str, Any]]:
    """Features of each text, as a pair where it has a second text (as in training)."""
    features: list[dict[str, Any]] = [{} for _ in texts]
    alone = [i for i, pair in enumerate(pairs) if pair is None]
    paired = [i for i, pair in enumerate(pairs) if pair is not None]
    for indices, second in ((alone, None), (paired, [pairs[i] for i in paired])):
        if not indices:
            continue
        encoded = tokenizer(
            [texts[i] for i in indices], second, truncation=True, max_length=max_length
        )
        for row, i in enumerate(indices):
            features[i] = {k: encoded[k][row] for k in encoded}
    return features


def _check_text_column(split: datasets.Dataset, column: str | None, key: str) -> None:
    feature = split.features.get(column) if column else None
    dtype = getattr(feature, "dtype", None)
    if feature is not None and dtype not in ("string", "large_string"):
        raise DataError(
            f"Column '{column}' ({key}) holds {dtype or type(feature).__name__}, not text. Set "
            f"{key}=COLUMN to the text column."
        )


def _check_one_label_kind(values: list[Any]) -> None:
    """Labels are numbers or names, not both: 0, 1, pos, neg would make four classes."""
    numeric = {str(v) for v in values if isinstance(v, int) or str(v).lstrip("-").isdigit()}
    named = {str(v) for v in values} - numeric
    if numeric and named:
        raise DataError(
            f"The labels mix numbers ({', '.join(sorted(numeric)[:3])}) and names "
            f"({', '.join(sorted(named)[:3])}); they would become separate classes. Use one kind, "
            f"or map numbers to names with options.label_names."
        )


def _sorted_labels(labels: set[str]) -> list[str]:
    # Integer-like labels in numeric order ("2" after "10" would be surprising), else text.
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _label_text(value: Any, feature: Any, label_names: list[str] | None) -> str:
    """The label name of a raw label value (ClassLabel id, integer, bool or string)."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if isinstance(feature, datasets.ClassLabel):
            return str(feature.int2str(value))
        if label_names and 0 <= value < len(label_names):
            return label_names[value]
        return str(value)
    if value is None:
        raise DataError("A row has no label. Remove rows with empty labels from the data.")
    return str(value)
