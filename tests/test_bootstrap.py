"""Bootstrap intervals and the paired comparison: hand-computed cases, coverage, shrinking
with more data, seeding, and corpus BLEU recomputed on each resample."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from nlptasks.builtins.translation.metrics import scores_from_statistics, sentence_statistics
from nlptasks.evaluation import bootstrap


def accuracy(sums: Mapping[str, float]) -> dict[str, float]:
    return {"accuracy": sums["correct"] / sums["n"]}


def rows_of(correct: list[int]) -> list[dict[str, float]]:
    return [{"correct": float(c), "n": 1.0} for c in correct]


def test_a_tiny_case_equals_the_exact_bootstrap_distribution() -> None:
    """Three of four right: a resample's accuracy is Binomial(4, 3/4) / 4, so P(0) = 1/256
    and P(0.25) = 12/256 put the 2.5th percentile at 0.25, and P(1) = 81/256 the 97.5th at
    1.0."""
    found = bootstrap.intervals(rows_of([1, 1, 1, 0]), accuracy, resamples=20000, seed=3)
    assert found["accuracy"] == bootstrap.Interval(0.75, 0.25, 1.0)


def test_the_resampling_is_the_one_written_down() -> None:
    """A hand-run of the procedure: multinomial counts from a seeded generator, sums, then
    the percentiles."""
    correct = np.array([1, 0, 1, 1, 0, 1, 1])
    rng = np.random.default_rng(11)
    counts = rng.multinomial(7, np.full(7, 1 / 7), size=40)
    by_hand = np.percentile(counts @ correct / 7, [2.5, 97.5])
    found = bootstrap.intervals(rows_of(correct.tolist()), accuracy, resamples=40, seed=11)
    assert (found["accuracy"].low, found["accuracy"].high) == pytest.approx(tuple(by_hand))


def test_the_interval_covers_the_estimate_and_shrinks_with_more_data() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 500, 5000):
        correct = (rng.random(n) < 0.8).astype(int).tolist()
        found = bootstrap.intervals(rows_of(correct), accuracy, resamples=400, seed=0)
        interval = found["accuracy"]
        assert interval.low <= interval.value <= interval.high
        assert interval.value == pytest.approx(sum(correct) / n)
        widths.append(interval.high - interval.low)
    # The width falls as 1/sqrt(n): about 3.2 times per tenfold data.
    assert widths[0] > 2.5 * widths[1] > 2.5**2 * widths[2] > 0


def test_seeded() -> None:
    rows = rows_of([1, 0, 1, 1, 0, 0, 1, 1, 1, 0] * 3)
    first = bootstrap.intervals(rows, accuracy, resamples=200, seed=5)
    assert bootstrap.intervals(rows, accuracy, resamples=200, seed=5) == first
    assert bootstrap.intervals(rows, accuracy, resamples=200, seed=6) != first


def test_bleu_is_recomputed_from_the_resampled_corpus() -> None:
    """Sentence statistics add up to sacreBLEU's corpus BLEU of any multiset of sentences:
    a resample that draws sentence 0 twice and sentence 2 once scores the corpus [0, 0, 2],
    which is not the mean of sentence BLEUs."""
    hyps = ["the cat sat on the mat", "a dog barks", "it is raining in Paris today"]
    refs = ["the cat is on the mat", "the dog barks", "it rains in Paris today"]
    rows = sentence_statistics(hyps, refs)
    names, matrix = bootstrap.statistics_matrix(rows)
    sums = dict(zip(names, (np.array([2, 0, 1]) @ matrix).tolist(), strict=True))
    expected = BLEU().corpus_score([hyps[0], hyps[0], hyps[2]], [[refs[0], refs[0], refs[2]]])
    assert scores_from_statistics(sums)["bleu"] == pytest.approx(expected.score)
    every = dict(zip(names, matrix.sum(axis=0).tolist(), strict=True))
    assert scores_from_statistics(every)["bleu"] == pytest.approx(
        BLEU().corpus_score(hyps, [refs]).score
    )


def test_undefined_metrics_get_no_interval() -> None:
    found = bootstrap.intervals([{"n": 1.0}], lambda s: {"x": math.nan}, resamples=10)
    assert math.isnan(found["x"].low) and math.isnan(found["x"].high)
    assert bootstrap.intervals([], accuracy) == {}


def test_paired_finds_a_real_difference() -> None:
    rng = np.random.default_rng(1)
    good = (rng.random(300) < 0.85).astype(int).tolist()
    bad = (rng.random(300) < 0.65).astype(int).tolist()
    found = bootstrap.paired(rows_of(good), rows_of(bad), accuracy, resamples=1000, seed=0)
    result = found["accuracy"]
    assert result.significant and result.low > 0 and result.p_value < 0.01
    assert result.difference == pytest.approx((sum(good) - sum(bad)) / 300)


def test_paired_finds_none_between_equal_models() -> None:
    # The same predictions (the same model, run twice): the difference is exactly zero.
    same = rows_of([1, 0, 1, 1, 0, 1] * 20)
    result = bootstrap.paired(same, same, accuracy, resamples=500, seed=0)["accuracy"]
    assert (result.low, result.high, result.significant) == (0.0, 0.0, False)
    # Two models that are right equally often, on different examples.
    a = rows_of([1, 0] * 100)
    b = rows_of([0, 1] * 100)
    result = bootstrap.paired(a, b, accuracy, resamples=1000, seed=0)["accuracy"]
    assert not result.significant and result.p_value > 0.05


def test_paired_needs_the_same_examples() -> None:
    with pytest.raises(ValueError, match="scored 3 and 2 examples"):
        bootstrap.paired(rows_of([1, 0, 1]), rows_of([1, 0]), accuracy)


def test_sentiment_statistics_give_sklearn_accuracy_and_macro_f1() -> None:
    """The sentiment task's score and aggregate, on summed per-example counts, equal
    sklearn on the predictions, for three classes of which one is never predicted."""
    from sklearn.metrics import accuracy_score, f1_score

    from nlptasks.builtins.sentiment.task import SentimentTask

    rng = np.random.default_rng(2)
    gold = rng.integers(0, 3, 200).tolist()
    predicted = [g if rng.random() < 0.6 else int(rng.integers(0, 2)) for g in gold]
    task = SentimentTask()
    task.label_names = ["neg", "neu", "pos"]
    import torch

    from nlptasks.task import EvalContext

    context = EvalContext(  # only the texts are read
        examples={"text": [str(i) for i in range(200)]},
        features=None,
        tokenizer=None,
        recipe=None,  # type: ignore[arg-type]
    )
    outputs = {"predictions": torch.tensor(predicted), "references": torch.tensor(gold)}
    stats = task.score(outputs, context)
    names, matrix = bootstrap.statistics_matrix(stats.statistics)
    found = task.aggregate(dict(zip(names, matrix.sum(axis=0).tolist(), strict=True)))
    assert found["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert found["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro"))
    assert stats.records[0] == {
        "text": "0",
        "prediction": task.label_names[predicted[0]],
        "reference": task.label_names[gold[0]],
    }


def test_qa_statistics_give_the_official_scores() -> None:
    from nlptasks.builtins.qa.metrics import question_scores, squad_scores
    from nlptasks.builtins.qa.task import QaTask

    predictions = {"a": "Denver Broncos", "b": "1990", "c": "the river", "d": ""}
    golds = {"a": ["Denver Broncos", "Broncos"], "b": ["in 1990"], "c": ["Seine"], "d": []}
    rows = []
    for qid, answers in golds.items():
        em, f1 = question_scores(predictions[qid], answers, v2=True)
        group = "has" if answers else "no"
        rows.append(
            {
                "questions": 1.0,
                "exact": em,
                "f1": f1,
                f"{group}/questions": 1.0,
                f"{group}/exact": em,
                f"{group}/f1": f1,
            }
        )
    names, matrix = bootstrap.statistics_matrix(rows)
    found = QaTask().aggregate(dict(zip(names, matrix.sum(axis=0).tolist(), strict=True)))
    assert found == pytest.approx(squad_scores(predictions, golds, v2=True))
