"""nlptasks-ner: the conformance kit, seqeval scores, CoNLL files and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nlptasks_ner.conll import read_conll
from nlptasks_ner.metrics import entities, entity_scores, sentence_statistics
from nlptasks_ner.sample import sentences

from nlptasks.testing import TaskConformance, TinyData

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def write_conll(path: Path, rows: list[tuple[list[str], list[str]]]) -> Path:
    blocks = ["\n".join(f"{w} {t}" for w, t in zip(ws, ts, strict=True)) for ws, ts in rows]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def tiny_ner(folder: Path) -> TinyData:
    """The generated sentences as CoNLL files: 60 to train, 20 to evaluate."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = sentences()
    train = write_conll(folder / "train.conll", rows[:60])
    dev = write_conll(folder / "dev.conll", rows[-20:])
    return TinyData(
        overrides=[f"data.train_path={train}", f"data.eval_path={dev}"],
        texts=[" ".join(words) for words, _ in rows],
        records=[{"text": "Maria Lopez flew to Oslo ."}, {"text": "Siemens hired Tom ."}],
    )


class TestNerConformance(TaskConformance):
    task = "ner"
    plugin = "ner"  # the installed entry point, loaded as users get it
    model_shape = "encoder"

    def tiny_data(self, folder: Path) -> TinyData:
        return tiny_ner(folder)


def test_read_conll_skips_docstart_and_takes_the_last_column(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text(CONLL)
    assert read_conll(path, "data.train_path") == {
        "tokens": [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]],
        "ner_tags": [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]],
    }


def test_entity_scores_count_whole_entities() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    # The person's boundary is wrong: one of two entities found, one of two predicted right.
    predicted = [["B-PER", "O", "O", "B-LOC"]]
    scores = entity_scores(gold, predicted)
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["f1"] == 0.5
    assert scores["accuracy"] == 0.75


def test_summed_sentence_counts_are_seqeval_corpus_scores() -> None:
    """Per-sentence counts that add up give exactly seqeval's corpus-level scores, on tag
    sequences with every way of being wrong: wrong types, boundaries, I- without a B-."""
    import random

    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(0, 9) for _ in range(rng.randint(1, 12))]
        gold = [[rng.choice(tags) for _ in range(n)] for n in lengths]
        # Mostly right, as a model's predictions are.
        predicted = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in gold]
        scores = entity_scores(gold, predicted)
        expected = {
            "precision": precision_score(gold, predicted, zero_division=0),
            "recall": recall_score(gold, predicted, zero_division=0),
            "f1": f1_score(gold, predicted, zero_division=0),
            "accuracy": accuracy_score(gold, predicted) if sum(lengths) else float("nan"),
        }
        assert scores == pytest.approx(expected, abs=1e-12, nan_ok=True), (gold, predicted)


def test_a_sentence_counts_its_entities() -> None:
    stats = sentence_statistics(["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "O", "B-LOC"])
    assert stats == {
        "gold": 2.0,
        "predicted": 2.0,
        "correct": 1.0,
        "tokens": 4.0,
        "correct_tokens": 3.0,
    }


def test_entities_group_words_with_character_offsets() -> None:
    text = "Anna  Berg went to New York"
    spans = [(0, 4), (6, 10), (11, 15), (16, 18), (19, 22), (23, 27)]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    found = entities(text, spans, tags, [0.9, 0.7, 1, 1, 0.8, 0.6])
    assert found == [
        {"entity_group": "PER", "word": "Anna  Berg", "start": 0, "end": 10, "score": 0.8},
        {"entity_group": "LOC", "word": "New York", "start": 19, "end": 27, "score": 0.7},
    ]


def _run(cli: Any, tmp_path: Path, tiny_model: Any) -> Path:
    texts = [" ".join(words) for words, _ in sentences()]
    model = tiny_model("encoder", texts)
    run_dir = tmp_path / "run"
    cli(
        "run",
        "ner",
        f"model={model}",
        "data.dataset=tiny-ner",  # the registered dataset: 200 sentences, 40 held out
        "train.epochs=6",
        "train.learning_rate=3e-3",
        "train.mixed_precision=no",
        "-o",
        str(run_dir),
        "-q",
    )
    return run_dir


def test_run_eval_predict_from_the_cli(
    cli: Any, isolated_plugins: Any, tiny_model: Any, tmp_path: Path
) -> None:
    isolated_plugins("ner")
    run_dir = _run(cli, tmp_path, tiny_model)
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]["eval"]
    # The generated entities are easy: a tiny model learns most of them in 6 epochs.
    assert metrics["f1"] > 0.8, metrics
    evaluated = json.loads(cli("eval", "ner", "--model", str(run_dir / "model"), "--json").stdout)
    assert evaluated == pytest.approx(metrics, rel=1e-6)
    out = cli("predict", "ner", "--model", str(run_dir / "model"), "Omar flew to Lima .").stdout
    prediction = json.loads(out)
    assert prediction["tags"][:1] == ["B-PER"] and prediction["entities"][0]["word"] == "Omar"

    from transformers import pipeline

    tagger = pipeline(
        "token-classification", model=str(run_dir / "model"), aggregation_strategy="first"
    )
    groups = {e["entity_group"] for e in tagger("Omar flew to Lima .")}
    assert "PER" in groups


def test_a_row_with_more_tags_than_tokens_is_one_line(
    cli: Any, isolated_plugins: Any, tiny_model: Any, tmp_path: Path
) -> None:
    isolated_plugins("ner")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"tokens": ["Tom", "ran"], "ner_tags": ["B-PER", "O", "O"]}) + "\n")
    model = tiny_model("encoder")
    result = cli(
        "run",
        "ner",
        f"model={model}",
        f"data.train_path={bad}",
        f"data.eval_path={bad}",
        exit_code=1,
    )
    assert "row 0 has 2 tokens but 3 tags" in result.output
    assert "Traceback" not in result.output


def test_conll_comments_and_no_break_spaces(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text("# sent_id = 1\n# text = New York\nNew\u00a0York B-LOC\nis O\n")
    assert read_conll(path, "data.train_path") == {
        "tokens": [["New\u00a0York", "is"]],
        "ner_tags": [["B-LOC", "O"]],
    }


def test_non_bio_tags_are_one_line(
    cli: Any, isolated_plugins: Any, tiny_model: Any, tmp_path: Path
) -> None:
    isolated_plugins("ner")
    bad = tmp_path / "bioes.jsonl"
    bad.write_text(json.dumps({"tokens": ["Tom", "ran"], "ner_tags": ["S-PER", "O"]}) + "\n")
    result = cli(
        "run",
        "ner",
        f"model={tiny_model('encoder')}",
        f"data.train_path={bad}",
        f"data.eval_path={bad}",
        exit_code=1,
    )
    assert "row 0 has tag 'S-PER', not a BIO tag" in result.output


def test_a_word_without_tokens_does_not_shift_the_tags(
    isolated_plugins: Any, tiny_model: Any, tmp_path: Path
) -> None:
    """A zero-width space is a word with no token: the words after it keep their own tags."""
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import prepare_run

    isolated_plugins("ner")
    rows = [
        {
            "tokens": ["Tom", "\u200b", "flew", "to", "Oslo"],
            "ner_tags": ["B-PER", "O", "O", "O", "B-LOC"],
        }
    ] * 8
    data = tmp_path / "zw.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tiny_model("encoder", ["Tom flew to Oslo"])
    recipe = load_recipe(
        "ner", None, [f"model={model}", f"data.train_path={data}", f"data.eval_path={data}"]
    )
    prepared = prepare_run(recipe)
    task, features = prepared.task, prepared.features["eval"]
    assert features[0]["scored_words"] == [0, 2, 3, 4]  # word 1 has no token
    import torch

    from nlptasks import EvalContext

    # A perfect model: its predictions are the labels.
    labels = torch.tensor([features[i]["labels"] for i in range(len(features))])
    context = EvalContext(prepared.examples["eval"], features, prepared.tokenizer, recipe)
    scores = task.score({"predictions": labels}, context)
    assert scores.records[0]["prediction"] == scores.records[0]["reference"]
    sums = {key: sum(s[key] for s in scores.statistics) for key in scores.statistics[0]}
    metrics = task.aggregate(sums)
    assert metrics["f1"] == 1.0 and metrics["accuracy"] == 1.0


def test_predict_splits_punctuation_like_conll(
    cli: Any, isolated_plugins: Any, tiny_model: Any, tmp_path: Path
) -> None:
    isolated_plugins("ner")
    run_dir = _run(cli, tmp_path, tiny_model)
    text = "Omar flew to Oslo."
    out = json.loads(cli("predict", "ner", "--model", str(run_dir / "model"), text).stdout)
    assert out["tags"][-2:] == ["B-LOC", "O"]  # "Oslo" and "." are two words
    assert {"entity_group": "LOC", "word": "Oslo", "start": 13, "end": 17}.items() <= (
        out["entities"][-1].items()
    )
