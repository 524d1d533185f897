"""Translation: seq2seq models (Marian, T5, BART, mBART/NLLB/M2M) and decoder-only models
prompted to translate (SmolLM2), scored by sacreBLEU BLEU and chrF on generated text.

Two model kinds, one task:

- **seq2seq** (``config.is_encoder_decoder``): the source (with T5's task prefix) is the
  encoder input, the target the labels; multilingual tokenizers get their language codes
  (``src_lang`` / ``tgt_lang``) and generation forces the target language's code first.
- **decoder-only**: the source goes into a prompt (the tokenizer's chat template when it has
  one), the target follows it, and only the target (and its EOS) is learned. Generated text
  is cut at its first line break (one line in, one line out).

Generation-based evaluation runs through the core's evaluation path (length-sorted batches,
gathered across processes); its ``max_new_tokens`` comes from the eval data (the longest
reference, with room to spare), never from transformers' 20-token default (transformers
#10032), unless the recipe's ``generation.max_new_tokens`` says otherwise.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import datasets
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from nlptasks import (
    DataError,
    EvalContext,
    ExampleStatistics,
    GenerationConfig,
    MetricSpec,
    Recipe,
    load_pretrained,
    position_limit,
)
from nlptasks.builtins.generation.data import IGNORE, render_chat
from nlptasks.builtins.generation.task import next_token_losses, token_losses
from nlptasks.builtins.translation.data import (
    EmptyPairs,
    drop_empty,
    read_parallel,
    read_tsv,
    to_pairs,
    tsv_columns,
)
from nlptasks.builtins.translation.metrics import (
    corpus_scores,
    scores_from_statistics,
    sentence_statistics,
)
from nlptasks.evaluation.evaluator import length_sorted_batches

LANGUAGE_NAMES = {
    "ar": "Arabic",
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "tr": "Turkish",
    "zh": "Chinese",
}
"""Names used in prompts and T5's prefix (``translate English to Romanian: ``)."""


@dataclass
class TranslationOptions:
    """The translation task's settings (the recipe's ``options:`` section)."""

    source_lang: str | None = None
    """Language of the source text (``en``): a key of the ``translation`` dicts or a column."""
    target_lang: str | None = None
    source_path: str | None = None
    """Training source file, one sentence per line, aligned with ``target_path`` (wins over
    ``data.train_path`` / ``data.dataset``)."""
    target_path: str | None = None
    eval_source_path: str | None = None
    """Evaluation source file, aligned with ``eval_target_path`` (wins over
    ``data.eval_path``)."""
    eval_target_path: str | None = None
    source_column: str | None = None
    """Flat data: the source column (default: ``translation`` dicts, a column named by the
    language, or ``source``)."""
    target_column: str | None = None
    source_prefix: str | None = None
    """Text put before every source (T5: ``translate English to Romanian: ``); when absent,
    T5 models get that prefix and other models none."""
    source_lang_code: str | None = None
    """mBART / NLLB / M2M language code of the source (``en_XX``, ``eng_Latn``); when absent,
    ``source_lang``."""
    target_lang_code: str | None = None
    max_source_length: int = 256
    """Longer sources are cut to this many tokens (counted, with a warning)."""
    max_target_length: int = 256
    """Longer targets are cut to this many tokens (counted); also the most tokens predict
    generates unless ``generation.max_new_tokens`` says otherwise."""
    empty_pairs: Literal["skip", "error"] = "skip"
    """A pair with an empty side: skip it (counted, with a warning) or stop with an error."""
    prompt: str = "Translate from {source} to {target}:\n{text}"
    """Decoder-only models: the request, with ``{source}`` / ``{target}`` (language names)
    and ``{text}``; the translation follows it (on a new line, or as the chat reply)."""
    chat_template: bool | None = None
    """Decoder-only models: wrap the prompt in the tokenizer's chat template (default: when
    the tokenizer has one)."""

    def problems(self) -> list[str]:
        found = []
        for key in ("source_lang", "target_lang"):
            if not getattr(self, key):
                found.append(
                    f"'options.{key}' is not set: name the {key.split('_')[0]} language "
                    f"(e.g. options.{key}={'en' if key == 'source_lang' else 'fr'})"
                )
        if self.source_lang and self.source_lang == self.target_lang:
            found.append("'options.source_lang' and 'options.target_lang' are the same")
        for first, second in (
            ("source_path", "target_path"),
            ("eval_source_path", "eval_target_path"),
        ):
            if bool(getattr(self, first)) != bool(getattr(self, second)):
                found.append(f"'options.{first}' and 'options.{second}' go together: set both")
        for key in ("max_source_length", "max_target_length"):
            if getattr(self, key) < 1:
                found.append(f"'options.{key}' must be at least 1, not {getattr(self, key)}")
        if "{text}" not in self.prompt:
            found.append("'options.prompt' must hold {text} (where the source goes)")
        return found


class TranslationTask:
    """Fine-tunes and evaluates translation models; BLEU and chrF from sacreBLEU."""

    name: ClassVar[str] = "translation"
    default_recipe: ClassVar[str] = "smollm2"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "bleu",
            greater_is_better=True,
            low=0.0,
            high=100.0,
            needs_generation=True,
            description="sacreBLEU corpus BLEU (13a, mixed case) of generated translations",
        ),
        MetricSpec(
            "chrf",
            greater_is_better=True,
            low=0.0,
            high=100.0,
            needs_generation=True,
            description="sacreBLEU chrF of generated translations",
        ),
    )
    main_metric: ClassVar[str] = "bleu"
    input_fields: ClassVar[tuple[str, ...]] = ("text",)
    options_class: ClassVar[type] = TranslationOptions
    pipeline_tag: ClassVar[str] = "translation"

    def __init__(self) -> None:
        self.seq2seq = True
        self.pad_token_id = 0
        self.eos_token_id: int | None = None
        self.context_length: int | None = None
        self.forced_bos_token_id: int | None = None
        self.prefix = ""
        self.chat = False
        self.eval_new_tokens: int | None = None
        self.options = TranslationOptions()
        self.model_type = ""

    # ------------------------------------------------------------------------------- data
    def read_source(self, recipe: Recipe, source: str) -> datasets.Dataset | None:
        """Parallel files and two-column tsv files, which the core's loaders do not read."""
        options: TranslationOptions = recipe.options
        if source == "train":
            if options.source_path and options.target_path:
                return read_parallel(options.source_path, options.target_path)
            path, key = recipe.data.train_path, "data.train_path"
        else:
            if options.eval_source_path and options.eval_target_path:
                return read_parallel(
                    options.eval_source_path,
                    options.eval_target_path,
                    ("eval_source", "eval_target"),
                )
            path, key = recipe.data.eval_path, "data.eval_path"
        # A tsv with named columns of its own (or more than two) is the core's to read.
        named = options.source_column or options.target_column
        if path and path.lower().endswith(".tsv") and not named and tsv_columns(path) == 2:
            return read_tsv(
                path,
                key,
                (options.source_lang or "", "source"),
                (options.target_lang or "", "target"),
            )
        return None

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        options: TranslationOptions = recipe.options
        assert options.source_lang and options.target_lang  # options.problems() checks
        policy: EmptyPairs = options.empty_pairs
        prepared = {}
        for name, split in splits.items():
            pairs = to_pairs(
                split,
                options.source_lang,
                options.target_lang,
                (options.source_column, options.target_column),
                name,
            )
            keep = ["source", "target", *(["line"] if "line" in pairs.column_names else [])]
            prepared[name] = drop_empty(pairs.select_columns(keep), policy, name)
            if len(prepared[name]) == 0:
                raise DataError(f"The {name} data has no pair with text on both sides.")
        return datasets.DatasetDict(prepared)

    # ------------------------------------------------------------------------------ model
    def build_model(self, model_path: str, recipe: Recipe) -> tuple[torch.nn.Module, Any]:
        model, tokenizer = self.load_trained(model_path, train=True)
        self.configure(tokenizer, recipe.options)
        return model, tokenizer

    def load_trained(self, model_dir: str, train: bool = False) -> tuple[torch.nn.Module, Any]:
        config = load_pretrained(_config_source(model_dir), AutoConfig.from_pretrained, self.name)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.model_type = str(getattr(config, "model_type", ""))
        auto = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        tokenizer = load_pretrained(model_dir, AutoTokenizer.from_pretrained, self.name)
        model = load_pretrained(model_dir, auto.from_pretrained, self.name)
        if tokenizer.pad_token_id is None:
            # Padding is masked out of attention and loss: any id will do; EOS is usual.
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_token_id = tokenizer.pad_token_id or 0
        self.eos_token_id = tokenizer.eos_token_id
        self.context_length = position_limit(model, tokenizer)
        if not train:
            model.eval()
        return model, tokenizer

    def configure(self, tokenizer: Any, options: TranslationOptions) -> None:
        """Languages, prefix and prompt style for the loaded model and its tokenizer; a
        setting the model cannot honour is a DataError that says which value to use."""
        self.options = options
        limit = self.context_length
        # Decoder-only models check prompt + target against their context per pair instead.
        for key in ("max_source_length", "max_target_length"):
            value = getattr(options, key)
            if self.seq2seq and limit is not None and value > limit:
                raise DataError(
                    f"options.{key} is {value}, more than this model accepts ({limit} tokens). "
                    f"Set options.{key}={limit} or less."
                )
        self.forced_bos_token_id = None
        if self.seq2seq and hasattr(tokenizer, "src_lang"):  # mBART, NLLB, M2M100
            source = self._language_code(tokenizer, options, "source")
            target = self._language_code(tokenizer, options, "target")
            tokenizer.src_lang = source
            if hasattr(tokenizer, "tgt_lang"):
                tokenizer.tgt_lang = target
            self.forced_bos_token_id = language_token_id(tokenizer, target)
        else:
            for key in ("source_lang_code", "target_lang_code"):
                if getattr(options, key):
                    raise DataError(
                        f"options.{key} is set, but this model's tokenizer has no language "
                        f"codes (only mBART, NLLB and M2M100 tokenizers do). Drop it."
                    )
        if options.source_prefix is not None:
            self.prefix = options.source_prefix
        elif self.seq2seq and self.model_type == "t5":
            self.prefix = (
                f"translate {language_name(options.source_lang)} to "
                f"{language_name(options.target_lang)}: "
            )
        else:
            self.prefix = ""
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if options.chat_template and not has_template:
            raise DataError(
                "options.chat_template is true but this model's tokenizer has no chat "
                "template. Set options.chat_template=false (a plain prompt)."
            )
        self.chat = not self.seq2seq and (
            has_template if options.chat_template is None else options.chat_template
        )

    def _language_code(self, tokenizer: Any, options: TranslationOptions, side: str) -> str:
        code = getattr(options, f"{side}_lang_code") or getattr(options, f"{side}_lang")
        if language_token_id(tokenizer, code) is None:
            known = language_codes(tokenizer)
            hint = f" It knows {', '.join(known[:6])}{', ...' if len(known) > 6 else ''}."
            raise DataError(
                f"'{code}' is not a language code this tokenizer knows.{hint if known else ''} "
                f"Set options.{side}_lang_code to the code of the {side} language."
            )
        return str(code)

    # ------------------------------------------------------------------------ features
    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        options: TranslationOptions = recipe.options
        if self.options is not options:  # nlptasks eval preprocesses without build_model
            self.configure(tokenizer, options)
        sources, cut = self.source_ids(tokenizer, list(dataset["source"]))
        targets = tokenizer(text_target=list(dataset["target"]), add_special_tokens=self.seq2seq)[
            "input_ids"
        ]
        if not self.seq2seq and self.eos_token_id is not None:
            targets = [[*ids, self.eos_token_id] for ids in targets]
        long_targets = sum(len(ids) > options.max_target_length for ids in targets)
        targets = [_cut(ids, options.max_target_length, self.eos_token_id) for ids in targets]
        _warn_cut(cut, len(sources), "sources", "options.max_source_length")
        _warn_cut(long_targets, len(targets), "targets", "options.max_target_length")
        if self.seq2seq:
            rows = {"input_ids": sources, "labels": targets, "length": [len(s) for s in sources]}
        else:
            rows = {"input_ids": [], "labels": [], "prompt_ids": [], "length": []}
            lines = dataset["line"] if "line" in dataset.column_names else None
            for number, (prompt, target) in enumerate(zip(sources, targets, strict=True), 1):
                total = len(prompt) + len(target)
                if self.context_length is not None and total > self.context_length:
                    where = f"line {lines[number - 1]}" if lines else f"row {number}"
                    raise DataError(
                        f"The pair at {where} has {total} tokens with its prompt, more than the "
                        f"model's context ({self.context_length}). Lower "
                        f"options.max_source_length or options.max_target_length (now "
                        f"{options.max_source_length} and {options.max_target_length})."
                    )
                rows["input_ids"].append([*prompt, *target])
                rows["labels"].append([IGNORE] * len(prompt) + target)
                rows["prompt_ids"].append(prompt)
                rows["length"].append(total)
        return datasets.Dataset.from_dict(rows)

    def source_ids(self, tokenizer: Any, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Encoder inputs (seq2seq) or prompts (decoder-only) of ``texts``, and how many
        sources were cut to ``options.max_source_length`` tokens."""
        limit = self.options.max_source_length
        if self.seq2seq:
            encoded = tokenizer([self.prefix + t for t in texts])["input_ids"]
            cut = sum(len(ids) > limit for ids in encoded)
            if cut:
                encoded = tokenizer(
                    [self.prefix + t for t in texts], truncation=True, max_length=limit
                )["input_ids"]
            return [list(ids) for ids in encoded], cut
        plain = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        cut = 0
        prompts = []
        for text, ids in zip(texts, plain, strict=True):
            if len(ids) > limit:
                cut += 1
                text = tokenizer.decode(ids[:limit])
            prompts.append(self.prompt_ids(tokenizer, text))
        return prompts, cut

    def prompt_ids(self, tokenizer: Any, text: str) -> list[int]:
        """The token ids of the request to translate ``text``; the translation follows."""
        options = self.options
        request = options.prompt.format(
            source=language_name(options.source_lang),
            target=language_name(options.target_lang),
            text=self.prefix + text,
        )
        if self.chat:
            rendered = render_chat(tokenizer, [{"role": "user", "content": request}], prompt=True)
            return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        ids = list(tokenizer(request + "\n")["input_ids"])  # with the BOS the model expects
        if ids and self.eos_token_id is not None and ids[-1] == self.eos_token_id:
            ids = ids[:-1]  # some tokenizers end every text with EOS: not before the target
        return ids

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)

        def right(key: str, value: int) -> torch.Tensor:
            return torch.tensor([f[key] + [value] * (longest - len(f[key])) for f in features])

        if self.seq2seq:
            width = max(len(f["labels"]) for f in features)
            return {
                "input_ids": right("input_ids", self.pad_token_id),
                "attention_mask": _mask([len(f["input_ids"]) for f in features], longest),
                "labels": torch.tensor(
                    [f["labels"] + [IGNORE] * (width - len(f["labels"])) for f in features]
                ),
            }
        batch = {
            "input_ids": right("input_ids", self.pad_token_id),
            "attention_mask": _mask([len(f["input_ids"]) for f in features], longest),
            "labels": right("labels", IGNORE),
        }
        if "prompt_ids" in features[0]:
            # Generation continues on the right of the prompt: prompts are padded on the left.
            prompt_longest = max(len(f["prompt_ids"]) for f in features)
            batch["prompt_ids"] = torch.tensor(
                [
                    [self.pad_token_id] * (prompt_longest - len(f["prompt_ids"])) + f["prompt_ids"]
                    for f in features
                ]
            )
            batch["prompt_mask"] = _mask(
                [len(f["prompt_ids"]) for f in features], prompt_longest, left=True
            )
        return batch

    # ---------------------------------------------------------------------------- loss
    def count_targets(self, batch: Mapping[str, Any]) -> int:
        labels = batch["labels"] if self.seq2seq else batch["labels"][:, 1:]
        return int((labels != IGNORE).sum())

    def _token_losses(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        if not self.seq2seq:
            return next_token_losses(model, batch)
        labels = batch["labels"]
        inner: Any = getattr(model, "module", model)  # under DDP
        decoder_input_ids = inner.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=decoder_input_ids,
        ).logits
        return token_losses(logits, labels)

    def compute_loss(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        return self._token_losses(model, batch).sum()

    def eval_step(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
        labels = batch["labels"] if self.seq2seq else batch["labels"][:, 1:]
        return {
            "loss": self._token_losses(model, batch).sum(dim=1),
            "loss_count": (labels != IGNORE).sum(dim=1),
        }

    # ---------------------------------------------------------------------- generation
    def generate_step(
        self, model: torch.nn.Module, batch: Mapping[str, Any], settings: GenerationConfig
    ) -> dict[str, torch.Tensor]:
        max_new = settings.max_new_tokens or self.eval_new_tokens or self.options.max_target_length
        return {"generated": self._generate(model, batch, settings, max_new)}

    def _generate(
        self, model: Any, batch: Mapping[str, Any], settings: GenerationConfig, max_new: int
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "num_beams": settings.num_beams,
            "do_sample": settings.do_sample,
            "repetition_penalty": settings.repetition_penalty,
            "pad_token_id": self.pad_token_id,
        }
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
            if settings.top_k is not None:
                kwargs["top_k"] = settings.top_k
        if self.seq2seq:
            if self.forced_bos_token_id is not None:
                kwargs["forced_bos_token_id"] = self.forced_bos_token_id
            output: torch.Tensor = model.generate(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs
            )
            return output
        prompt = batch["prompt_ids"]
        if self.context_length is not None:
            kwargs["max_new_tokens"] = max(1, min(max_new, self.context_length - prompt.shape[1]))
        output = model.generate(input_ids=prompt, attention_mask=batch["prompt_mask"], **kwargs)
        return output[:, prompt.shape[1] :]  # the new tokens only

    def decode(self, tokenizer: Any, ids: Sequence[int]) -> str:
        """Generated ids as a translation (a decoder-only model's first line)."""
        text = str(tokenizer.decode([i for i in ids if i >= 0], skip_special_tokens=True))
        if not self.seq2seq:
            text = text.strip().split("\n", 1)[0]
        return text.strip()

    def metrics_from_statistics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Corpus BLEU and chrF from summed sentence statistics (sacreBLEU's own formulas)."""
        return scores_from_statistics(sums)

    def new_metrics(self, context: EvalContext) -> TranslationScores:
        # Every process sees the whole eval set, so each derives the same length budget: the
        # longest reference with a fifth to spare (a translation may run longer).
        longest = max(
            (sum(t != IGNORE for t in labels) for labels in context.features["labels"]), default=1
        )
        self.eval_new_tokens = min(self.options.max_target_length, math.ceil(longest * 1.2) + 5)
        return TranslationScores(self, context)

    # ------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
    ) -> list[dict[str, Any]]:
        options: TranslationOptions = recipe.options
        self.configure(tokenizer, options)
        texts = [str(r["text"]) for r in records]
        sources, cut = self.source_ids(tokenizer, texts)
        _warn_cut(cut, len(sources), "inputs", "options.max_source_length")
        for number, ids in enumerate(sources, 1):
            if not self.seq2seq and self.context_length and len(ids) >= self.context_length:
                raise DataError(
                    f"Input {number}'s prompt has {len(ids)} tokens, leaving no room in the "
                    f"model's context ({self.context_length}) for a translation. Shorten it, "
                    f"or cut long inputs with --set options.max_source_length=N."
                )
        max_new = recipe.generation.max_new_tokens or options.max_target_length
        device = next(model.parameters()).device
        results = [""] * len(texts)
        for indices in length_sorted_batches(
            [len(s) for s in sources], recipe.train.eval_batch_size
        ):
            rows = [
                {"input_ids": sources[i], "labels": [IGNORE], "prompt_ids": sources[i]}
                for i in indices
            ]
            batch = {k: v.to(device) for k, v in self.collate(rows).items()}
            generated = self._generate(model, batch, recipe.generation, max_new)
            for i, ids in zip(indices, generated.tolist(), strict=True):
                results[i] = self.decode(tokenizer, ids)
        return [
            {"text": text, "translation": out} for text, out in zip(texts, results, strict=True)
        ]

    def model_card_info(self) -> dict[str, Any]:
        options = self.options
        info: dict[str, Any] = {
            "languages": f"{options.source_lang} -> {options.target_lang}",
            "model kind": "encoder-decoder" if self.seq2seq else "decoder-only, prompted",
        }
        if self.prefix:
            info["source prefix"] = json.dumps(self.prefix)
        if not self.seq2seq:
            info["prompt"] = json.dumps(options.prompt) + (" (chat template)" if self.chat else "")
        return info


class TranslationScores:
    """Generated ids -> text, then corpus BLEU and chrF against the references; the
    signatures go to ``context.extra["signatures"]`` (results.json stores them)."""

    def __init__(self, task: TranslationTask, context: EvalContext) -> None:
        self.task = task
        self.tokenizer = context.tokenizer
        self.texts: dict[int, str] = {}

    def add_batch(self, outputs: Mapping[str, torch.Tensor]) -> None:
        if "generated" not in outputs:
            return
        for index, ids in zip(
            outputs["index"].tolist(), outputs["generated"].tolist(), strict=True
        ):
            self.texts[int(index)] = self.task.decode(self.tokenizer, ids)

    def compute(self, context: EvalContext) -> dict[str, float]:
        if not context.generated:
            return {}
        hypotheses = [self.texts.get(i, "") for i in range(len(context.features))]
        scores, signatures = corpus_scores(hypotheses, list(context.examples["target"]))
        context.extra["signatures"] = signatures
        return scores

    def example_statistics(self, context: EvalContext) -> ExampleStatistics | None:
        """Per sentence: source, translation and reference, and sacreBLEU's statistics (their
        sums give corpus BLEU and chrF); none for an evaluation that did not translate."""
        if not context.generated:
            return None
        sources, references = context.examples["source"], context.examples["target"]
        hypotheses = [self.texts.get(i, "") for i in range(len(context.features))]
        records = [
            {"source": src, "prediction": hyp, "reference": ref}
            for src, hyp, ref in zip(sources, hypotheses, references, strict=True)
        ]
        return ExampleStatistics(records, sentence_statistics(hypotheses, references))


def language_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get((code or "").split("_")[0].lower(), code or "")


def language_token_id(tokenizer: Any, code: str) -> int | None:
    """The id of a language code's token (mBART/NLLB write ``en_XX`` / ``eng_Latn``, M2M100
    ``__en__``), or None when the tokenizer does not know it. Language codes are added
    (special) tokens: an ordinary subword spelled ``en`` is not one."""
    added = dict(tokenizer.get_added_vocab())
    for token in (code, f"__{code}__"):
        if token in added:
            return int(added[token])
    return None


def language_codes(tokenizer: Any) -> list[str]:
    """The language codes among a tokenizer's added tokens (``en_XX``, ``eng_Latn``, and
    M2M100's ``__en__`` written as ``en``, the form ``src_lang`` takes)."""
    codes = []
    for token in sorted(tokenizer.get_added_vocab()):
        if m := re.fullmatch(r"__([a-z]{2,3})__", token):
            codes.append(m.group(1))
        elif re.fullmatch(r"[a-z]{2,3}_[A-Za-z]{2,4}", token):
            codes.append(token)
    return codes


def _config_source(model_dir: str) -> str:
    """Where a model's config lies: the folder itself, or a LoRA adapter's base model."""
    folder = Path(model_dir).expanduser()
    adapter = folder / "adapter_config.json"
    if not (folder / "config.json").is_file() and adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if base:
            return str(base)
    return model_dir


def _cut(ids: list[int], limit: int, eos: int | None) -> list[int]:
    """The first ``limit`` tokens, ending with EOS when the whole did (the model learns to
    stop)."""
    if len(ids) <= limit:
        return ids
    return [*ids[: limit - 1], eos] if eos is not None and ids[-1] == eos else ids[:limit]


def _mask(lengths: Sequence[int], width: int, left: bool = False) -> torch.Tensor:
    rows = [[0] * (width - n) + [1] * n if left else [1] * n + [0] * (width - n) for n in lengths]
    return torch.tensor(rows)


def _warn_cut(count: int, total: int, what: str, key: str) -> None:
    if count:
        warnings.warn(
            f"Cut {count} of {total} {what} to {key} tokens; raise {key} to keep them whole.",
            stacklevel=2,
        )
