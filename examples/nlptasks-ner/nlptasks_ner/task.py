"""Token classification for named entities: words -> BIO tags, with any encoder.

Each word's first sub-token carries its tag; the others are ignored (-100), as in
transformers' run_ner. A word cut off by ``data.max_length`` is predicted ``O`` and still
scored, so truncation costs recall instead of hiding errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification, AutoTokenizer

import nlptasks
from nlptasks import CollectOutputs, EvalContext, MetricSpec, Recipe
from nlptasks_ner.conll import is_conll, read_conll
from nlptasks_ner.metrics import entities, entity_scores

IGNORE = -100
BIO = re.compile(r"O|[BI]-\S+")
# Words as CoNLL files have them: punctuation apart ("Oslo." is "Oslo" and ".").
WORD = re.compile(r"\w+(?:['\u2019-]\w+)*|[^\w\s]")


@dataclass
class NerOptions:
    """The ner task's settings (the recipe's ``options:`` section)."""

    tokens_column: str = "tokens"
    tags_column: str = "ner_tags"
    label_names: list[str] | None = None
    """Tag names of integer tags 0..n-1 (a ClassLabel column names them itself)."""

    def problems(self) -> list[str]:
        names = self.label_names or []
        bad = [n for n in names if not BIO.fullmatch(n)]
        if bad:
            return [f"'options.label_names' has '{bad[0]}', not a BIO tag (O, B-TYPE, I-TYPE)"]
        return []


class NerTask:
    """Named-entity recognition; the tag names live in the model's id2label."""

    name: ClassVar[str] = "ner"
    default_recipe: ClassVar[str] = "minilm"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("precision", greater_is_better=True, low=0.0, high=1.0),
        MetricSpec("recall", greater_is_better=True, low=0.0, high=1.0),
        MetricSpec("f1", greater_is_better=True, low=0.0, high=1.0, description="entity F1"),
        MetricSpec("accuracy", greater_is_better=True, low=0.0, high=1.0),
    )
    main_metric: ClassVar[str] = "f1"
    input_fields: ClassVar[tuple[str, ...]] = ("text",)
    options_class: ClassVar[type] = NerOptions
    pipeline_tag: ClassVar[str] = "token-classification"

    def __init__(self) -> None:
        self.label_names: list[str] = []
        self.pad_token_id = 0
        self.max_positions: int | None = None

    # ------------------------------------------------------------------------------ data
    def read_source(self, recipe: Recipe, source: str) -> datasets.Dataset | None:
        """CoNLL files (``.conll``, ``.iob``, ``.bio``), which the core does not read."""
        path = recipe.data.train_path if source == "train" else recipe.data.eval_path
        if not is_conll(path):
            return None
        key = "data.train_path" if source == "train" else "data.eval_path"
        return datasets.Dataset.from_dict(read_conll(str(path), key))

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        options: NerOptions = recipe.options
        for name, split in splits.items():
            for column, key in (
                (options.tokens_column, "options.tokens_column"),
                (options.tags_column, "options.tags_column"),
            ):
                if column not in split.column_names:
                    raise nlptasks.DataError(
                        f"The {name} data has no column '{column}' (it has "
                        f"{', '.join(split.column_names)}). Set {key}=COLUMN."
                    )
        as_text = {name: self._tag_texts(split, options) for name, split in splits.items()}
        if trained_model is not None:
            id2label = trained_model.config.id2label
            self.label_names = [id2label[i] for i in range(len(id2label))]
        elif options.label_names:
            self.label_names = list(options.label_names)
        else:
            seen = {tag for rows in as_text.values() for tags in rows for tag in tags}
            # O first, then each type's B- before its I-: ids stable across runs.
            self.label_names = sorted(seen, key=lambda t: (t != "O", t[2:], t[:2]))
        known = set(self.label_names)
        prepared = {}
        for name, split in splits.items():
            tokens = split[options.tokens_column]
            for row, (words, tags) in enumerate(zip(tokens, as_text[name], strict=True)):
                if len(words) != len(tags):
                    raise nlptasks.DataError(
                        f"The {name} data's row {row} has {len(words)} tokens but {len(tags)} "
                        f"tags. Give every token one tag."
                    )
                if bad := next((t for t in tags if not BIO.fullmatch(t)), None):
                    raise nlptasks.DataError(
                        f"The {name} data's row {row} has tag '{bad}', not a BIO tag (O, "
                        f"B-TYPE, I-TYPE). Convert the tags to BIO (IOB2)."
                    )
                unknown = sorted(set(tags) - known)
                if unknown:
                    raise nlptasks.DataError(
                        f"The {name} data's row {row} has tag '{unknown[0]}', which the "
                        f"{'model' if trained_model is not None else 'label list'} does not "
                        f"know ({', '.join(self.label_names)}). Fix the data or "
                        f"options.label_names."
                    )
            prepared[name] = datasets.Dataset.from_dict(
                {"tokens": [list(map(str, w)) for w in tokens], "tags": as_text[name]}
            )
        return datasets.DatasetDict(prepared)

    def _tag_texts(self, split: datasets.Dataset, options: NerOptions) -> list[list[str]]:
        """Every row's tags as names: ClassLabel ids, plain ids with label_names, or text."""
        feature = split.features[options.tags_column]
        inner = getattr(feature, "feature", None)
        names = inner.names if isinstance(inner, datasets.ClassLabel) else options.label_names
        rows = split[options.tags_column]
        out = []
        for row in rows:
            tags = []
            for tag in row:
                if isinstance(tag, int) and not isinstance(tag, bool):
                    if not names or not 0 <= tag < len(names):
                        raise nlptasks.DataError(
                            f"Tag {tag} is a number with no name. Set options.label_names to "
                            f"the tag names in id order ([O, B-PER, I-PER, ...])."
                        )
                    tags.append(names[tag])
                else:
                    tags.append(str(tag))
            out.append(tags)
        return out

    # ----------------------------------------------------------------------------- model
    def build_model(self, model_path: str, recipe: Recipe) -> tuple[torch.nn.Module, Any]:
        tokenizer = nlptasks.load_pretrained(model_path, AutoTokenizer.from_pretrained, self.name)
        model = nlptasks.load_pretrained(
            model_path,
            lambda ref, **kw: AutoModelForTokenClassification.from_pretrained(
                ref,
                num_labels=len(self.label_names),
                id2label=dict(enumerate(self.label_names)),
                label2id={tag: i for i, tag in enumerate(self.label_names)},
                ignore_mismatched_sizes=True,
                **kw,
            ),
            self.name,
        )
        self._remember(model, tokenizer)
        return model, tokenizer

    def _remember(self, model: torch.nn.Module, tokenizer: Any) -> None:
        self.pad_token_id = tokenizer.pad_token_id or 0
        self.max_positions = nlptasks.position_limit(model, tokenizer)

    def _max_length(self, recipe: Recipe) -> int:
        # Longer inputs would not fit the model's position embeddings.
        return min(recipe.data.max_length, self.max_positions or recipe.data.max_length)

    def load_trained(self, model_dir: str) -> tuple[torch.nn.Module, Any]:
        tokenizer = nlptasks.load_pretrained(model_dir, AutoTokenizer.from_pretrained, self.name)
        model = nlptasks.load_pretrained(
            model_dir, AutoModelForTokenClassification.from_pretrained, self.name
        )
        self.label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self._remember(model, tokenizer)
        model.eval()
        return model, tokenizer

    # -------------------------------------------------------------------------- features
    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        ids = {tag: i for i, tag in enumerate(self.label_names)}
        max_length = self._max_length(recipe)

        def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            encoded = tokenizer(
                batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length
            )
            labels, scored = [], []
            for i, tags in enumerate(batch["tags"]):
                previous = None
                row, words = [], []
                for word in encoded.word_ids(i):
                    first = word is not None and word != previous
                    row.append(ids[tags[word]] if first else IGNORE)
                    if first:
                        words.append(word)
                    previous = word
                labels.append(row)
                # Which word each labelled position tags: a word with no token (a zero-width
                # space) has none, and the words after it must not shift onto its tag.
                scored.append(words)
            return {
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                "labels": labels,
                "scored_words": scored,
                "length": [len(row) for row in encoded["input_ids"]],
            }

        return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([f[key] + [value] * (longest - len(f[key])) for f in features])

        return {
            "input_ids": pad("input_ids", self.pad_token_id),
            "attention_mask": pad("attention_mask", 0),
            "labels": pad("labels", IGNORE),
        }

    # ------------------------------------------------------------------------------ loss
    def count_targets(self, batch: Mapping[str, Any]) -> int:
        return int((batch["labels"] != IGNORE).sum())

    def _logits(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits.float()

    def compute_loss(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        logits = self._logits(model, batch)
        return F.cross_entropy(logits.transpose(1, 2), batch["labels"], reduction="sum")

    def eval_step(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
        logits = self._logits(model, batch)
        labels = batch["labels"]
        per_token = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        return {
            # One tag id per first sub-token, -100 elsewhere (and as padding).
            "predictions": logits.argmax(-1).masked_fill(labels == IGNORE, IGNORE),
            "loss": per_token.sum(dim=1),
            "loss_count": (labels != IGNORE).sum(dim=1),
        }

    def new_metrics(self, context: EvalContext) -> CollectOutputs:
        return CollectOutputs(self._scores)

    def _scores(self, outputs: dict[str, torch.Tensor], context: EvalContext) -> dict[str, float]:
        gold = context.examples["tags"]
        scored = context.features["scored_words"]
        predicted = []
        for row, tags, words in zip(outputs["predictions"].tolist(), gold, scored, strict=True):
            tagged = ["O"] * len(tags)  # words cut off by max_length, or without tokens
            for word, tag in zip(words, (t for t in row if t != IGNORE), strict=True):
                tagged[word] = self.label_names[tag]
            predicted.append(tagged)
        return entity_scores(gold, predicted)

    # --------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
    ) -> list[dict[str, Any]]:
        results = []
        for record in records:
            text = str(record["text"])
            spans = [m.span() for m in WORD.finditer(text)]
            words = [text[a:b] for a, b in spans]
            encoded = tokenizer(
                words,
                is_split_into_words=True,
                truncation=True,
                max_length=self._max_length(recipe),
                return_tensors="pt",
            )
            probabilities = model(**encoded.to(model.device)).logits[0].float().softmax(-1)
            best = probabilities.max(-1)
            tags = ["O"] * len(words)
            scores = [1.0] * len(words)
            seen: set[int] = set()
            for position, word in enumerate(encoded.word_ids(0)):
                if word is not None and word not in seen:
                    seen.add(word)
                    tags[word] = self.label_names[int(best.indices[position])]
                    scores[word] = float(best.values[position])
            results.append(
                {"text": text, "tags": tags, "entities": entities(text, spans, tags, scores)}
            )
        return results

    def model_card_info(self) -> dict[str, Any]:
        return {"tags": self.label_names}
