"""A fixture plugin: a generate-and-score task written only against the public API.

A causal LM learns to copy the first words of an SST-2 sentence after a prompt. Its loss
covers the target only; its generation-based metrics compare generated text with string
references taken from the raw examples in the evaluation context. Its batches need a collate
of their own (prompts padded on the left), built on the core's padding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

import nlptasks
from nlptasks import (
    EvalContext,
    GenerationConfig,
    MetricSpec,
    Recipe,
    Scores,
    Step,
    TaskInfo,
    generation_kwargs,
    pad_features,
    predict_batches,
    sampling_seed,
)

TASK = "toy-generate"
SST2 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sst2"


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(TASK, "tests.plugins.generate_task:GenerateTask", description="copy words")


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register("toy-copy-pairs", load_pairs, description="copy the first words", tasks=(TASK,))


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    register(TASK, "tiny", Path(__file__).with_name("generate-recipe.yaml"))


def load_pairs(config: Any) -> datasets.DatasetDict:
    def read(name: str, limit: int) -> datasets.Dataset:
        lines = (SST2 / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[1 : limit + 1]
        words = [" ".join(line.split("\t")[0].split()[:3]) for line in lines]
        return datasets.Dataset.from_dict(
            {"prompt": [f"copy : {w} =" for w in words], "target": [f" {w}" for w in words]}
        )

    return datasets.DatasetDict({"train": read("train", 200), "validation": read("dev", 35)})


class GenerateTask:
    info: ClassVar[TaskInfo] = TaskInfo(
        name=TASK,
        pipeline_tag="text-generation",
        metrics=(
            MetricSpec("exact_match", True, low=0.0, high=1.0, needs_generation=True),
            MetricSpec("generated_chars", True, low=0.0, needs_generation=True),
        ),
        input_fields=("prompt",),
        default_recipe="tiny",
    )
    pad_id = 0  # the tokenizer's EOS (build_model): GPT-2 has no padding token

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        return splits

    def build_model(
        self, model_path: str, recipe: Recipe, trained: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = tokenizer.eos_token_id
        return AutoModelForCausalLM.from_pretrained(model_path), tokenizer

    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        eos = tokenizer.eos_token_id

        def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            prompts = tokenizer(batch["prompt"])["input_ids"]
            targets = [ids + [eos] for ids in tokenizer(batch["target"])["input_ids"]]
            return {
                "input_ids": [p + t for p, t in zip(prompts, targets, strict=True)],
                "attention_mask": [
                    [1] * (len(p) + len(t)) for p, t in zip(prompts, targets, strict=True)
                ],
                # The loss covers the target only.
                "labels": [[-100] * len(p) + t for p, t in zip(prompts, targets, strict=True)],
                "prompt_ids": prompts,
                "prompt_mask": [[1] * len(p) for p in prompts],
                "length": [len(p) + len(t) for p, t in zip(prompts, targets, strict=True)],
            }

        return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The core's padding, but prompts on the left: generation continues on the right."""
        pads = {"input_ids": self.pad_id, "prompt_ids": self.pad_id}
        return pad_features(features, pads, left=("prompt_ids", "prompt_mask"))

    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Step:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]  # position t predicts token t + 1
        losses = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, reduction="none")
        return Step(loss=losses.sum(dim=1), count=(targets != -100).sum(dim=1))

    def generate_step(
        self, model: torch.nn.Module, batch: Mapping[str, Any], settings: GenerationConfig
    ) -> dict[str, torch.Tensor]:
        return {"generated": self._generate(model, batch, settings)}

    def _generate(
        self, model: Any, batch: Mapping[str, Any], settings: GenerationConfig
    ) -> torch.Tensor:
        prompt = batch["prompt_ids"]
        kwargs = generation_kwargs(settings, self.pad_id, settings.max_new_tokens or 8)
        with sampling_seed(settings, prompt.device):
            out = model.generate(input_ids=prompt, attention_mask=batch["prompt_mask"], **kwargs)
        return out[:, prompt.shape[1] :]  # the new tokens only

    def score(self, outputs: Mapping[str, torch.Tensor], context: EvalContext) -> Scores:
        """Exact match of generated text against the references in ``context.examples``;
        a loss-only evaluation (``context.generated`` false) has nothing to score."""
        references = context.examples["target"]
        if not context.generated:
            return Scores([{"reference": r} for r in references], [{} for _ in references])
        records, statistics = [], []
        for row, reference in zip(outputs["generated"].tolist(), references, strict=True):
            ids = [t for t in row if t >= 0]  # -100: padding between batches and processes
            text = context.tokenizer.decode(ids, skip_special_tokens=True)
            match = text.strip() == reference.strip()
            records.append({"generated": text, "reference": reference})
            statistics.append({"examples": 1.0, "matches": float(match), "chars": float(len(text))})
        return Scores(records, statistics)

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        if not sums.get("examples"):  # nothing generated
            return {}
        return {"exact_match": sums["matches"] / sums["examples"], "generated_chars": sums["chars"]}

    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Batched by length; with ``write``, one at a time in input order, each completion
        written when it is done."""
        prompts = tokenizer([str(r["prompt"]) for r in records])["input_ids"]
        features = [
            {"prompt_ids": ids, "prompt_mask": [1] * len(ids), "length": len(ids)}
            for ids in prompts
        ]
        device = next(model.parameters()).device
        batches = (
            predict_batches(features, self.collate, 8, device)
            if write is None
            else (
                ([i], {k: v.to(device) for k, v in self.collate([f]).items()})
                for i, f in enumerate(features)
            )
        )
        results: list[dict[str, Any]] = [{} for _ in records]
        for indices, batch in batches:
            generated = self._generate(model, batch, recipe.generation)
            for i, ids in zip(indices, generated.tolist(), strict=True):
                text = tokenizer.decode(ids, skip_special_tokens=True)
                results[i] = {"prompt": records[i]["prompt"], "completion": text}
                if write is not None:
                    write(text)
                    write("\n")
        return results

    def model_card(self) -> dict[str, Any]:
        return {}
