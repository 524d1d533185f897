"""What the core does for every task: padding features, the batched predict loop, generation
settings and their seed, the TaskInfo declaration and the checks of what a task returns."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nlptasks import MetricSpec, Step, TaskInfo
from nlptasks.batching import PAD_INDEX, pad_features, predict_batches
from nlptasks.errors import PluginError
from nlptasks.generating import generation_kwargs, sampling_seed, seeded
from nlptasks.recipes import GenerationConfig
from nlptasks.runner import checked_predictions
from nlptasks.task import check_step, missing_members

INFO = TaskInfo(name="t", pipeline_tag="text-classification", metrics=(MetricSpec("a", True),))


def test_pad_features_pads_each_column_its_own_way() -> None:
    batch = pad_features(
        [
            {"input_ids": [5, 6, 7], "labels": [1], "mask": [1, 1, 1], "y": 3, "length": 3},
            {"input_ids": [8], "labels": [2, 2], "mask": [1], "y": 4, "length": 1},
        ],
        {"input_ids": 0},
        left=("mask",),
    )
    assert set(batch) == {"input_ids", "labels", "mask", "y"}  # length groups, it is no input
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[1, PAD_INDEX], [2, 2]]
    assert batch["mask"].tolist() == [[1, 1, 1], [0, 0, 1]]  # on the left
    assert batch["y"].tolist() == [3, 4] and batch["y"].dtype == torch.long


def test_pad_features_nested_and_empty_columns() -> None:
    nested = pad_features([{"spans": [[1, 2]]}, {"spans": [[3, 4], [5, 6]]}], {"spans": -1})
    assert nested["spans"].tolist() == [[[1, 2], [-1, -1]], [[3, 4], [5, 6]]]
    empty = pad_features([{"ids": []}, {"ids": []}])["ids"]
    assert tuple(empty.shape) == (2, 0) and empty.dtype == torch.long


@pytest.mark.parametrize(
    ("features", "says"),
    [
        ([{"id": "q1"}], "Feature column 'id' cannot be padded"),
        ([{"a": [1]}, {"b": [1]}], "Feature column 'a'"),  # not in every feature
        ([{"a": 1}, {"a": [1]}], "a list in others"),
        ([{"a": None}], "missing or None"),
        ([{"a": [[1], [1, 2]]}], "Feature column 'a'"),  # ragged inside
    ],
)
def test_pad_features_refuses_what_is_not_a_tensor_in_one_line(
    features: list[dict[str, object]], says: str
) -> None:
    with pytest.raises(PluginError, match="Remove it in preprocess") as caught:
        pad_features(features)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_predict_batches_are_length_sorted_and_cover_every_feature_once() -> None:
    features = [{"input_ids": [1] * n} for n in (3, 1, 5, 2, 4)]
    seen = []
    for indices, batch in predict_batches(features, pad_features, 2, "cpu"):
        seen.extend(indices)
        lengths = [len(features[i]["input_ids"]) for i in indices]
        assert batch["input_ids"].shape == (len(indices), max(lengths))
    assert seen == [2, 4, 0, 3, 1]  # longest first
    assert sorted(seen) == list(range(5))


def test_generation_kwargs_follow_the_settings() -> None:
    greedy = generation_kwargs(GenerationConfig(num_beams=3), 0, 7)
    assert greedy == {
        "max_new_tokens": 7,
        "num_beams": 3,
        "do_sample": False,
        "repetition_penalty": GenerationConfig().repetition_penalty,
        "pad_token_id": 0,
    }
    sampled = generation_kwargs(GenerationConfig(do_sample=True, temperature=0.5, top_k=4), 1, 2)
    assert sampled["temperature"] == 0.5 and sampled["top_k"] == 4 and "top_p" in sampled


def test_sampling_seed_repeats_with_a_seed_never_without_and_keeps_the_callers_state() -> None:
    cpu = torch.device("cpu")

    def draw(settings: GenerationConfig) -> list[float]:
        with sampling_seed(settings, cpu):
            return torch.rand(4).tolist()

    with_seed = GenerationConfig(do_sample=True, seed=7)
    assert seeded(with_seed) and draw(with_seed) == draw(with_seed)
    assert draw(dataclasses.replace(with_seed, seed=8)) != draw(with_seed)
    unseeded = GenerationConfig(do_sample=True)
    torch.manual_seed(0)
    assert not seeded(unseeded) and draw(unseeded) != draw(unseeded)  # fresh each call
    after = torch.rand(1).item()
    torch.manual_seed(0)
    assert torch.rand(1).item() == after  # the caller's random stream did not move


def test_task_info_refuses_a_wrong_declaration_in_one_line() -> None:
    assert INFO.main_metric == "a"
    assert dataclasses.replace(INFO, metrics=()).main_metric == "loss"
    for changes, says in (
        ({"metrics": ("a",)}, "must be MetricSpec"),
        ({"metrics": (MetricSpec("a", True), MetricSpec("a", True))}, "repeat a name"),
        ({"metrics": (MetricSpec("loss", False),)}, "declare 'loss'"),
        ({"input_fields": "text"}, "tuple of field names"),
    ):
        with pytest.raises(PluginError, match=says):
            dataclasses.replace(INFO, **changes)


def test_missing_members_names_what_a_task_lacks() -> None:
    class Partial:
        info = INFO

        def forward(self) -> None: ...

    missing = missing_members(Partial)
    assert "forward" not in missing and "info" not in missing
    assert {"prepare_data", "build_model", "score", "aggregate", "predict"} <= set(missing)


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ({"loss": torch.zeros(2)}, "must return nlptasks.Step"),
        (Step(torch.tensor(1.0)), "loss must hold one number per example, shape (2,), got ()"),
        (Step(torch.zeros(2), torch.ones(3)), "count must hold one number per example"),
        (Step(torch.zeros(2), None, [torch.zeros(2)]), "outputs must be a dict"),  # type: ignore[arg-type]
    ],
)
def test_check_step_says_what_is_wrong(step: object, says: str) -> None:
    class Task:
        info = INFO

    with pytest.raises(PluginError) as caught:
        check_step(Task(), step, 2)
    assert says in str(caught.value)


def test_predictions_must_answer_each_record_with_json() -> None:
    assert checked_predictions("t", [{"a": 1}], 1) == [{"a": 1}]
    for found, says in (
        ([{"a": 1}], "gave 1 results for 2 records"),
        ([{"a": math.nan}, {"a": 1}], "record 1 is not a JSON object"),
        ([{"a": torch.zeros(1)}, {"a": 1}], "record 1 is not a JSON object"),
        ([{"a": 1}, "text"], "record 2 is not a JSON object"),
    ):
        with pytest.raises(PluginError, match=says):
            checked_predictions("t", found, 2)
