"""Token classification for named entities: words -> BIO tags, with any encoder.

Each word's first sub-token carries its tag; the others are ignored (-100), as in
transformers' run_ner. A word cut off by ``data.max_length`` is predicted ``O`` and still
scored, so truncation costs recall instead of hiding errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification, AutoTokenizer

import nlptasks
from nlptasks import EvalContext, MetricSpec, Recipe, Scores, Step, TaskInfo
from nlptasks_ner.conll import is_conll, read_conll
from nlptasks_ner.metrics import entities, entity_metrics, sentence_statistics

IGNORE = -100
BIO = re.compile(r"O|[BI]-\S+")
# Words as CoNLL files have them: punctuation apart ("Oslo." is "Oslo" and ".").
WORD = re.compile(r"\w+(?:['\u2019-]\w+)*|[^\w\s]")


def _score(name: str, description: str = "") -> MetricSpec:
    return MetricSpec(name, greater_is_better=True, low=0.0, high=1.0, description=description)


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

    info: ClassVar[TaskInfo] = TaskInfo(
        name="ner",
        pipeline_tag="token-classification",
        metrics=(
            _score("f1", "entity F1 (seqeval, micro)"),
            _score("precision", "entity precision"),
            _score("recall", "entity recall"),
            _score("accuracy", "token accuracy"),
        ),
        input_fields=("text",),
        options=NerOptions,
        default_recipe="minilm",
    )

    def __init__(self) -> None:
        self.label_names: list[str] = []
        self.pad_token_id = 0
        self.max_positions: int | None = None

    # ------------------------------------------------------------------------------ data
    def read_source(
        self, recipe: Recipe, source: str, load: Callable[[], datasets.Dataset | None]
    ) -> datasets.Dataset | None:
        """CoNLL files (``.conll``, ``.iob``, ``.bio``), which the core does not read."""
        key = "data.train_path" if source == "train" else "data.eval_path"
        path = recipe.data.train_path if source == "train" else recipe.data.eval_path
        if is_conll(path):
            return datasets.Dataset.from_dict(read_conll(str(path), key))
        return load()

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
        out = []
        for row in split[options.tags_column]:
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
    def build_model(
        self, model_path: str, recipe: Recipe, trained: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        name = self.info.name
        tokenizer = nlptasks.load_pretrained(model_path, AutoTokenizer.from_pretrained, name)
        if trained:  # its head and tags are the model's own
            model = nlptasks.load_pretrained(
                model_path, AutoModelForTokenClassification.from_pretrained, name
            )
            self.label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        else:
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
                name,
            )
        self.pad_token_id = tokenizer.pad_token_id or 0
        self.max_positions = nlptasks.position_limit(model, tokenizer)
        return model, tokenizer

    def _max_length(self, recipe: Recipe) -> int:
        # Longer inputs would not fit the model's position embeddings.
        return min(recipe.data.max_length, self.max_positions or recipe.data.max_length)

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

    # ---------------------------------------------------------------------- step, metrics
    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Step:
        # scored_words is for score(), not the model.
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        logits = model(**inputs).logits.float()
        labels = batch["labels"]
        per_token = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        return Step(
            loss=per_token.sum(dim=1),
            count=(labels != IGNORE).sum(dim=1),
            # One tag id per first sub-token, -100 elsewhere (and as padding).
            outputs={"predictions": logits.argmax(-1).masked_fill(labels == IGNORE, IGNORE)},
        )

    def score(self, outputs: Mapping[str, torch.Tensor], context: EvalContext) -> Scores:
        """Per sentence: its words, predicted and gold tags, and entity and token counts."""
        examples, predictions = context.examples, outputs["predictions"].tolist()
        rows = (predictions, examples["tokens"], examples["tags"], context.features["scored_words"])
        records, statistics = [], []
        for row, words, gold, positions in zip(*rows, strict=True):
            tagged = ["O"] * len(gold)  # words cut off by max_length, or without tokens
            for word, tag in zip(positions, (t for t in row if t != IGNORE), strict=True):
                tagged[word] = self.label_names[tag]
            records.append({"tokens": words, "prediction": tagged, "reference": gold})
            statistics.append(sentence_statistics(gold, tagged))
        return Scores(records, statistics)

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        return entity_metrics(sums)

    # --------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        texts = [str(record["text"]) for record in records]
        spans = [[m.span() for m in WORD.finditer(text)] for text in texts]
        words = [[text[a:b] for a, b in s] for text, s in zip(texts, spans, strict=True)]
        encoded = tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=self._max_length(recipe)
        )
        features = [
            {"input_ids": ids, "attention_mask": mask}
            for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
        ]
        pad = {"input_ids": self.pad_token_id}
        results: list[dict[str, Any]] = [{} for _ in texts]
        for indices, batch in nlptasks.predict_batches(
            features,
            lambda rows: nlptasks.pad_features(rows, pad),
            recipe.train.eval_batch_size,
            next(model.parameters()).device,
        ):
            best = model(**batch).logits.float().softmax(-1).max(-1)
            for row, i in enumerate(indices):
                tags = ["O"] * len(words[i])  # a word cut off by max_length
                scores = [1.0] * len(words[i])
                seen: set[int] = set()
                for position, word in enumerate(encoded.word_ids(i)):
                    if word is not None and word not in seen:  # its first sub-token
                        seen.add(word)
                        tags[word] = self.label_names[int(best.indices[row, position])]
                        scores[word] = float(best.values[row, position])
                found = entities(texts[i], spans[i], tags, scores)
                results[i] = {"text": texts[i], "tags": tags, "entities": found}
        return results

    def model_card(self) -> dict[str, Any]:
        return {"tags": self.label_names}
