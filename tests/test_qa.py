"""The qa task: SQuAD layouts, windows, span post-processing, official metrics, run / eval /
predict end to end with a tiny BERT, and a 2-process evaluation."""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
from click.testing import CliRunner

from nlptasks.builtins.qa.data import normalise_split, read_examples
from nlptasks.builtins.qa.features import NO_OFFSET, WindowSettings, make_windows
from nlptasks.builtins.qa.metrics import (
    question_scores,
    question_statistics,
    squad_metric,
    squad_metrics,
    squad_scores,
)
from nlptasks.builtins.qa.postprocess import Answer, best_answers, window_spans
from nlptasks.builtins.qa.task import QaOptions, QaTask
from nlptasks.cli import cli
from nlptasks.errors import DataError
from nlptasks.testing import make_tiny_bert, run_nlptasks
from tests.conftest import SHARED_DATA

SQUAD = SHARED_DATA / "squad_v1.1"
TRAIN_JSON = SQUAD / "train-v1.1.first11-articles.json"
DEV_JSON = SQUAD / "dev-v1.1.json"
COLUMNS = {r: r for r in ("id", "title", "context", "question", "answers")}
# Windows that fit the tiny BERT's 128 positions and still slide over SQuAD paragraphs.
TINY_WINDOWS = ["options.max_length=128", "options.doc_stride=32", "options.max_question_length=32"]


def squad_questions(path: Path, limit: int | None = None) -> list[dict]:
    """Flat rows straight from an official SQuAD file (no nlptasks code involved)."""
    rows = []
    for article in json.loads(path.read_text())["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows.append(
                    {
                        "id": qa["id"],
                        "title": article["title"],
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [a["text"] for a in qa["answers"]],
                            "answer_start": [a["answer_start"] for a in qa["answers"]],
                        },
                    }
                )
    return rows[:limit] if limit else rows


@pytest.fixture(scope="module")
def tiny_qa_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    contexts = sorted({row["context"] for row in squad_questions(TRAIN_JSON)})
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-qa"), contexts, dropout=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_qa_bert: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qa_bert)


# ----------------------------------------------------------------------------- metrics
def _official_normalize(s: str) -> str:
    """The official SQuAD v1.1 script's normalisation, restated as the test's oracle."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _official_f1(prediction: str, gold: str) -> float:
    p, g = _official_normalize(prediction).split(), _official_normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize(
    ("prediction", "golds", "exact", "f1"),
    [
        ("the Denver Broncos", ["Denver Broncos"], 1.0, 1.0),  # articles
        ("Denver Broncos.", ["denver broncos"], 1.0, 1.0),  # punctuation and case
        ("  Denver   Broncos ", ["Denver Broncos"], 1.0, 1.0),  # whitespace
        ("Broncos of Denver", ["Denver Broncos"], 0.0, 0.8),  # bag of words: p 2/3, r 1
        ("Carolina", ["Denver Broncos", "Carolina Panthers"], 0.0, 2 / 3),  # max over golds
        ("Carolina Panthers", ["Denver Broncos", "Carolina Panthers", "Panthers"], 1.0, 1.0),
        ("theater", ["the theater"], 1.0, 1.0),  # "the" only as a whole word
        ("an", ["a"], 1.0, 0.0),  # both normalise to "": equal, but no token in common
        ("", ["Denver"], 0.0, 0.0),
        # string.punctuation is ASCII: the official script keeps curly quotes and dashes.
        ("\u201cDenver\u201d", ["Denver"], 0.0, 0.0),
        ("24\u201310", ["24 10"], 0.0, 0.0),
        ("24-10", ["2410"], 1.0, 1.0),
    ],
)
def test_squad_v1_scores_match_the_official_script(prediction, golds, exact, f1) -> None:
    assert question_scores(prediction, golds) == pytest.approx((exact, f1))


def test_squad_scores_equal_the_official_computation_on_real_dev_questions() -> None:
    rows = squad_questions(DEV_JSON, 600)
    rng = random.Random(0)
    predictions = {}
    for row in rows:  # spans near the gold ones: every kind of partial overlap
        start = max(0, row["answers"]["answer_start"][0] + rng.randint(-15, 15))
        predictions[row["id"]] = row["context"][start : start + rng.randint(0, 40)]
    golds = {row["id"]: row["answers"]["text"] for row in rows}
    em = [
        max(float(_official_normalize(predictions[q]) == _official_normalize(g)) for g in gs)
        for q, gs in golds.items()
    ]
    f1 = [max(_official_f1(predictions[q], g) for g in gs) for q, gs in golds.items()]
    expected = {"exact_match": 100 * sum(em) / len(em), "f1": 100 * sum(f1) / len(f1)}
    assert 0 < expected["exact_match"] < expected["f1"] < 100  # the cases are mixed
    assert squad_scores(predictions, golds) == pytest.approx(expected, abs=1e-9)
    metric = squad_metric()  # evaluate's API, over the same two functions
    computed = metric.compute(
        predictions=[{"id": q, "prediction_text": p} for q, p in predictions.items()],
        references=[{"id": r["id"], "answers": r["answers"]} for r in rows],
    )
    assert computed == pytest.approx(expected, abs=1e-9)


def test_squad_v2_scores_unanswerable_questions_and_break_them_down() -> None:
    # v2.0 script: golds that normalise to nothing are dropped; none left means the gold is "".
    assert question_scores("", [], v2=True) == (1.0, 1.0)
    assert question_scores("Denver", [], v2=True) == (0.0, 0.0)
    assert question_scores("", ["a"], v2=True) == (1.0, 1.0)
    assert question_scores("", ["Denver"], v2=True) == (0.0, 0.0)
    predictions = {"q1": "Denver Broncos", "q2": "", "q3": "Carolina", "q4": ""}
    golds = {"q1": ["Denver Broncos"], "q2": [], "q3": [], "q4": ["Panthers"]}
    scores = squad_scores(predictions, golds, v2=True)
    assert scores == pytest.approx(
        {
            "exact_match": 50.0,
            "f1": 50.0,
            "HasAns_exact": 50.0,
            "HasAns_f1": 50.0,
            "NoAns_exact": 50.0,
            "NoAns_f1": 50.0,
        }
    )
    metric = squad_metric(v2=True)
    computed = metric.compute(
        predictions=[{"id": q, "prediction_text": p} for q, p in predictions.items()],
        references=[
            {"id": q, "answers": {"text": g, "answer_start": [0] * len(g)}}
            for q, g in golds.items()
        ],
    )
    assert computed == pytest.approx(scores)
    # Without unanswerable questions their group is undefined (NaN), not missing.
    only_answerable = squad_metrics(question_statistics("Denver", ["Denver"], v2=True))
    assert only_answerable["HasAns_f1"] == 100.0 and only_answerable["NoAns_f1"] != 0.0
    assert set(only_answerable) == set(scores)


# -------------------------------------------------------------------------------- data
def test_the_official_layout_and_the_flat_layout_give_the_same_table(tmp_path: Path) -> None:
    nested = datasets.load_dataset("json", data_files=str(TRAIN_JSON), split="train")
    from_nested = normalise_split(read_examples(nested, "train"), "train", COLUMNS, "error")
    flat_file = tmp_path / "train.jsonl"
    flat_file.write_text("\n".join(json.dumps(r) for r in squad_questions(TRAIN_JSON)))
    flat = datasets.load_dataset("json", data_files=str(flat_file), split="train")
    from_flat = normalise_split(read_examples(flat, "train"), "train", COLUMNS, "error")
    assert len(from_nested) == 3807
    assert from_nested.to_list() == from_flat.to_list()
    parquet = tmp_path / "train.parquet"
    from_flat.to_parquet(str(parquet))
    again = datasets.load_dataset("parquet", data_files=str(parquet), split="train")
    assert normalise_split(again, "train", COLUMNS, "error").to_list() == from_flat.to_list()


def _one_question(**changes) -> datasets.Dataset:
    row = {
        "id": "q1",
        "title": "t",
        "context": "Denver won the game.",
        "question": "Who won?",
        "answers": {"text": ["Denver"], "answer_start": [0]},
    }
    row.update(changes)
    return datasets.Dataset.from_list([row])


def test_a_wrong_answer_start_names_the_question_or_is_skipped_and_counted() -> None:
    bad = datasets.concatenate_datasets(
        [_one_question(), _one_question(id="q2", answers={"text": ["won"], "answer_start": [3]})]
    )
    with pytest.raises(DataError, match=r"Question 'q2'.*answer_start 3.*bad_answers=skip"):
        normalise_split(bad, "train", COLUMNS, "error")
    with pytest.warns(UserWarning, match="Skipped 1 of 2 train questions"):
        kept = normalise_split(bad, "train", COLUMNS, "skip")
    assert kept["id"] == ["q1"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"context": "  "}, "Question 'q1' in the eval data has an empty context"),
        ({"question": ""}, "Question 'q1' in the eval data has an empty question"),
        ({"answers": None}, "Question 'q1' in the eval data has no answers field"),
        ({"answers": {"text": ["Denver"], "answer_start": []}}, "malformed answers"),
    ],
)
def test_bad_questions_are_one_clear_error(changes, message) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        normalise_split(_one_question(**changes), "eval", COLUMNS, "error")


def test_duplicate_ids_and_missing_columns_are_errors() -> None:
    twice = datasets.concatenate_datasets([_one_question(), _one_question()])
    with pytest.raises(DataError, match="Question id 'q1' appears twice"):
        normalise_split(twice, "train", COLUMNS, "error")
    without = _one_question().remove_columns("answers")
    with pytest.raises(DataError, match=r"no 'answers' column.*options.answers_column"):
        normalise_split(without, "train", COLUMNS, "error")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"data": [{"title": "x", "qas": []}]}, "data[0] has no 'paragraphs'"),
        ({"data": [{"paragraphs": [{"qas": []}]}]}, "data[0].paragraphs[0] has no 'context'"),
        (
            {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1"}]}]}]},
            "data[0].paragraphs[0].qas[0] has no 'question'",
        ),
        ({"data": [{"paragraphs": {"context": "c"}}]}, "data[0].paragraphs is dict"),
    ],
)
def test_a_squad_file_with_the_wrong_nesting_says_where(tmp_path, document, problem) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**document, "version": "1.1"}))
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    with pytest.raises(DataError, match=re.escape(problem)):
        read_examples(loaded, "train")


# ----------------------------------------------------------------------------- windows
def test_every_answer_that_fits_is_recovered_from_its_labelled_windows(tokenizer) -> None:
    rows = squad_questions(TRAIN_JSON, 400)
    settings = WindowSettings(max_length=96, doc_stride=24, max_question_length=24)
    windows = make_windows(
        tokenizer,
        [r["question"] for r in rows],
        [r["context"] for r in rows],
        settings,
        answers=[r["answers"] for r in rows],
    ).columns
    assert len(windows["input_ids"]) > 2 * len(rows)  # most paragraphs need several windows
    labelled: dict[int, int] = Counter()
    exact = 0
    for w, example in enumerate(windows["example_index"]):
        start, end = windows["start_positions"][w], windows["end_positions"][w]
        if start == windows["cls_index"][w]:
            assert end == start
            continue
        labelled[example] += 1
        row = rows[example]
        first, last = windows["offset_start"][w][start], windows["offset_end"][w][end]
        answer_start = row["answers"]["answer_start"][0]
        answer_end = answer_start + len(row["answers"]["text"][0])
        # The labelled tokens are the ones that hold the answer's first and last character.
        assert first <= answer_start < windows["offset_end"][w][start], row["id"]
        assert windows["offset_start"][w][end] < answer_end <= last, row["id"]
        exact += row["context"][first:last] == row["answers"]["text"][0]
    # Token boundaries give back the exact answer text, except where an annotator cut a word
    # ("Rober" of "Robers"): then the whole word.
    assert exact >= 0.99 * sum(labelled.values())
    # A window holds up to 96 - 24 - 3 context tokens: every SQuAD answer fits in one, so
    # every question has a labelled window.
    assert set(labelled) == set(range(len(rows)))


def test_windows_cover_a_long_context_and_label_no_answer_windows_with_cls(tokenizer) -> None:
    context = " ".join(f"word{i} is here." for i in range(300))
    answer_start = context.index("word290")
    settings = WindowSettings(max_length=64, doc_stride=16, max_question_length=16)
    made = make_windows(
        tokenizer,
        ["  where is word290?"],
        [context],
        settings,
        answers=[{"text": ["word290"], "answer_start": [answer_start]}],
    )
    columns = made.columns
    assert all(length <= 64 for length in columns["length"])
    covered: set[int] = set()
    for starts, ends in zip(columns["offset_start"], columns["offset_end"], strict=True):
        for s, e in zip(starts, ends, strict=True):
            if s != NO_OFFSET:
                covered.update(range(s, e))
    assert covered >= {i for i, ch in enumerate(context) if not ch.isspace()}  # nothing cut
    labelled = [w for w, s in enumerate(columns["start_positions"]) if s != columns["cls_index"][w]]
    assert labelled and len(labelled) < len(columns["input_ids"])


def test_a_long_question_is_cut_to_max_question_length_and_counted(tokenizer) -> None:
    settings = WindowSettings(max_length=64, doc_stride=8, max_question_length=10)
    long_question = "who " * 40 + "won?"  # longer than 10 tokens, shorter than a window
    made = make_windows(tokenizer, [long_question, "who won?"], ["Denver won."] * 2, settings)
    assert made.truncated_questions == 1
    first_window = made.columns["input_ids"][0]
    assert first_window.index(tokenizer.sep_token_id) == 11  # [CLS] + 10 question tokens


def test_left_padding_tokenizers_get_the_context_first(tokenizer) -> None:
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path, padding_side="left")
    settings = WindowSettings(max_length=64, doc_stride=16, max_question_length=16)
    made = make_windows(
        tokenizer,
        ["who won?"],
        ["Denver won the game."],
        settings,
        answers=[{"text": ["Denver"], "answer_start": [0]}],
    ).columns
    assert made["offset_start"][0][1] == 0  # the context right after [CLS]
    assert made["start_positions"][0] == 1
    assert made["offset_end"][0][made["end_positions"][0]] == len("Denver")


# ---------------------------------------------------------------------- post-processing
def _window(logit_at: dict[int, tuple[float, float]], offsets: list[tuple[int, int]]):
    """Logits (start, end) set at token positions, -10 elsewhere; offsets -1 before token 2."""
    width = len(offsets)
    start, end = torch.full((width,), -10.0), torch.full((width,), -10.0)
    for position, (s, e) in logit_at.items():
        start[position], end[position] = s, e
    return start, end, torch.tensor([o[0] for o in offsets]), torch.tensor([o[1] for o in offsets])


def _answer(*windows, n_best: int = 20, max_answer_length: int = 30, **kwargs) -> Answer:
    """The answer of one example from its windows: each window's n-best spans as forward
    finds them, merged as score and predict merge them."""
    found = [
        window_spans(
            start[None],
            end[None],
            {
                "offset_start": off_s[None],
                "offset_end": off_e[None],
                "cls_index": torch.tensor([0]),
            },
            n_best,
            max_answer_length,
        )
        for start, end, off_s, off_e in windows
    ]
    spans = {key: torch.cat([f[key] for f in found]) for key in found[0]}
    assert spans["span_score"].shape == (len(windows), n_best)  # small: n-best per window
    return best_answers(spans, [0] * len(windows), [CONTEXT], n_best, **kwargs)[0]


CONTEXT = "Denver Broncos beat the Carolina Panthers in Santa Clara."
# [CLS] question [SEP] then context words; a second window starting at "Carolina".
WORDS = [(0, 6), (7, 14), (15, 19), (20, 23), (24, 32), (33, 41), (42, 44), (45, 50), (51, 56)]
FIRST = [(-1, -1), (-1, -1), *WORDS[:6], (-1, -1)]
SECOND = [(-1, -1), (-1, -1), *WORDS[4:], (-1, -1)]


def test_the_best_span_over_all_windows_wins_in_characters() -> None:
    # First window: "Denver Broncos" scores 5 + 4; second: "Santa Clara" scores 6 + 6.
    first = _window({2: (5.0, -1.0), 3: (-1.0, 4.0)}, FIRST)
    second = _window({5: (6.0, -2.0), 6: (-3.0, 6.0)}, SECOND)
    # ...and the question tokens (offset -1) score highest of all, but are never an answer.
    first[0][1] = first[1][1] = 50.0
    answer = _answer(first, second)
    assert (answer.text, answer.start, answer.end) == ("Santa Clara", 45, 56)
    assert CONTEXT[answer.start : answer.end] == answer.text
    assert 0.5 < answer.score <= 1.0


def test_spans_longer_than_max_answer_length_or_reversed_are_never_chosen() -> None:
    # Tokens 2..7 are Denver Broncos beat the Carolina Panthers. The best start (Panthers, 9)
    # comes after the best end (Broncos, 9): reversed, so "Denver Broncos" (5 + 9) wins.
    window = _window({2: (5.0, -10.0), 3: (-10.0, 9.0), 7: (9.0, -9.0)}, FIRST)
    assert _answer(window, n_best=5).text == "Denver Broncos"
    # One token at most: Panthers alone (9 - 9) beats Broncos alone (-10 + 9).
    assert _answer(window, n_best=5, max_answer_length=1).text == "Panthers"


def test_scores_are_probabilities_over_the_n_best() -> None:
    # Spans: Denver (2 + 2 = 4), Denver..beat (2 + 1 = 3), beat (1 + 1 = 2), ...
    answer = _answer(_window({2: (2.0, 2.0), 4: (1.0, 1.0)}, FIRST), n_best=2)
    assert answer.text == "Denver"
    # softmax over the two best: e^4 / (e^4 + e^3)
    assert answer.score == pytest.approx(0.7310585786300049)


def test_no_answer_wins_only_with_version_2_and_past_the_threshold() -> None:
    window = _window({2: (3.0, -1.0), 3: (-1.0, 3.0)}, FIRST)
    window[0][0], window[1][0] = 4.0, 4.0  # null score 8 beats "Denver Broncos" at 6

    assert _answer(window).text == "Denver Broncos"  # v1.1: always a span
    no_answer = _answer(window, allow_no_answer=True)
    assert (no_answer.text, no_answer.start, no_answer.end) == ("", -1, -1)
    assert _answer(window, allow_no_answer=True, null_score_diff_threshold=2.5).text == (
        "Denver Broncos"
    )
    nothing = {key: torch.empty(0, 5) for key in ("span_score", "span_start", "span_end")}
    no_windows = best_answers({**nothing, "null_score": torch.empty(0)}, [], [CONTEXT], 5)
    assert no_windows == [Answer("", 0.0, -1, -1)]  # an example without windows


def test_batched_padded_windows_give_the_best_span_of_all_in_any_order() -> None:
    """Windows of several examples, batched and padded with -1 offsets as collate pads them,
    in shuffled order: each answer is the brute-force best valid span of its windows."""
    rng = random.Random(3)
    torch.manual_seed(3)
    contexts = [" ".join(f"w{e}x{i}" for i in range(40)) for e in range(4)]
    windows = []  # (example, start logits, end logits, offsets start, offsets end)
    for w in range(14):
        example, length = w % 4, rng.randint(3, 12)
        first = rng.randint(0, 30)
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", contexts[example])]
        offsets = [(-1, -1), (-1, -1), *words[first : first + length - 3], (-1, -1)]
        start, end = torch.randn(len(offsets)), torch.randn(len(offsets))
        windows.append((example, start, end, [o[0] for o in offsets], [o[1] for o in offsets]))
    n_best, longest_answer = 3, 4
    order = list(range(len(windows)))
    rng.shuffle(order)
    found, example_index = [], []
    for i in range(0, len(order), 5):  # batches padded to their longest window
        rows = [windows[w] for w in order[i : i + 5]]
        width = max(len(r[1]) for r in rows)
        batch = QaTask().collate(
            [{"offset_start": r[3], "offset_end": r[4], "cls_index": 0} for r in rows]
        )
        logits = [torch.randn(len(rows), width) * 50 for _ in range(2)]  # padding: anything
        for b, r in enumerate(rows):
            logits[0][b, : len(r[1])], logits[1][b, : len(r[2])] = r[1], r[2]
        found.append(window_spans(logits[0], logits[1], batch, n_best, longest_answer))
        example_index += [r[0] for r in rows]
    spans = {key: torch.cat([f[key] for f in found]) for key in found[0]}
    answers = best_answers(spans, example_index, contexts, n_best)
    for example, context in enumerate(contexts):
        best = max(
            (float(s[i] + e[j]), off_s[i], off_e[j])
            for ex, s, e, off_s, off_e in windows
            if ex == example
            for i in range(len(s))
            for j in range(i, min(i + longest_answer, len(s)))
            if off_s[i] >= 0 and off_s[j] >= 0
        )
        assert (answers[example].start, answers[example].end) == best[1:]
        assert answers[example].text == context[best[1] : best[2]]


def test_forward_gives_each_window_its_loss_and_in_evaluation_its_n_best(tiny_qa_bert) -> None:
    from types import SimpleNamespace

    task = QaTask()
    options = QaOptions(max_length=128, doc_stride=32, max_question_length=32, n_best=7)
    recipe = SimpleNamespace(options=options, name="test")
    model, tokenizer = task.build_model(str(tiny_qa_bert), recipe)  # type: ignore[arg-type]
    task.options = recipe.options
    rows = squad_questions(TRAIN_JSON, 3)
    made = make_windows(
        tokenizer,
        [r["question"] for r in rows],
        [r["context"] for r in rows],
        WindowSettings(max_length=64, doc_stride=16, max_question_length=16),
        answers=[r["answers"] for r in rows],
    ).columns
    features = [{k: made[k][i] for k in made} for i in range(len(made["length"]))]
    batch = task.collate(features)
    assert (batch["offset_start"][batch["attention_mask"] == 0] == NO_OFFSET).all()
    model.train()
    trained = task.forward(model, batch)
    assert trained.loss.shape == (len(features),) and trained.outputs == {}
    model.eval()
    with torch.inference_mode():
        evaluated = task.forward(model, batch)
    assert torch.allclose(evaluated.loss, trained.loss, atol=1e-5)  # dropout is 0
    shapes = {key: tuple(value.shape) for key, value in evaluated.outputs.items()}
    windows = len(features)
    assert shapes == {
        "span_score": (windows, 7),
        "span_start": (windows, 7),
        "span_end": (windows, 7),
        "null_score": (windows,),
    }


# -------------------------------------------------------------------------- end to end
def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def qa_run(tiny_qa_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("qa-run") / "run"
    invoke(
        "run",
        "qa",
        f"model={tiny_qa_bert}",
        f"data.train_path={TRAIN_JSON}",
        f"data.eval_path={DEV_JSON}",
        "data.max_train_examples=300",
        "data.max_eval_examples=101",
        "train.max_steps=12",
        "train.batch_size=16",
        "train.learning_rate=3e-3",
        "train.mixed_precision=no",
        *TINY_WINDOWS,
        "--quiet",
        "--output-dir",
        str(run_dir),
    )
    return run_dir


def test_a_tiny_model_trains_evaluates_and_saves_a_plain_transformers_model(qa_run: Path) -> None:
    from transformers import AutoModelForQuestionAnswering

    results = json.loads((qa_run / "results.json").read_text())
    metrics = results["metrics"]["eval"]
    assert set(metrics) == {"loss", "exact_match", "f1"}
    assert 0 < metrics["loss"] < 10
    assert results["data"]["eval_examples"] == 101  # questions, not windows
    assert results["data"]["eval_features"] > 101
    assert results["train"]["train_loss"] < 4.8  # ln(128): below a uniform guess
    model = AutoModelForQuestionAnswering.from_pretrained(qa_run / "model")
    assert model.config.architectures == ["BertForQuestionAnswering"]
    card = (qa_run / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card
    # transformers 5 has no question-answering pipeline: the card must not show one.
    assert "nlptasks predict qa --model" in card and "pipeline(" not in card


def test_eval_equals_the_run_and_predict_gives_the_answers_eval_scored(qa_run: Path) -> None:
    results = json.loads((qa_run / "results.json").read_text())
    evaluated = json.loads(invoke("eval", "qa", "--model", str(qa_run / "model"), "--json"))
    assert evaluated == pytest.approx(results["metrics"]["eval"], abs=1e-9)
    # predict on the same questions: its answers, scored, give eval's EM and F1 (so eval's
    # streaming post-processing and predict agree answer by answer).
    rows = squad_questions(DEV_JSON, 101)
    input_file = qa_run.parent / "questions.jsonl"
    input_file.write_text(
        "\n".join(json.dumps({"question": r["question"], "context": r["context"]}) for r in rows)
    )
    output = invoke("predict", "qa", "--model", str(qa_run / "model"), "--input", str(input_file))
    answers = [json.loads(line) for line in output.splitlines()]
    assert len(answers) == len(rows)
    for answer, row in zip(answers, rows, strict=True):
        assert set(answer) == {"answer", "score", "start", "end"}
        assert row["context"][answer["start"] : answer["end"]] == answer["answer"]
        assert 0 < answer["score"] <= 1
    scores = squad_scores(
        {r["id"]: a["answer"] for r, a in zip(rows, answers, strict=True)},
        {r["id"]: r["answers"]["text"] for r in rows},
    )
    assert scores["exact_match"] == pytest.approx(evaluated["exact_match"])
    assert scores["f1"] == pytest.approx(evaluated["f1"])


def test_predict_takes_fields_on_the_command_line_and_windows_long_contexts(
    qa_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nlptasks.builtins.qa import task as qa_task

    windows_seen: list[int] = []
    real_answers = qa_task.best_answers

    def counting_answers(spans, example_index, *rest):  # the real function, counted
        windows_seen.extend(example_index)
        return real_answers(spans, example_index, *rest)

    monkeypatch.setattr(qa_task, "best_answers", counting_answers)
    long_context = " ".join(["Filler words that say nothing at all."] * 60) + " Denver won."
    output = invoke(
        "predict",
        "qa",
        "--model",
        str(qa_run / "model"),
        "--field",
        "question=Who won?",
        "--field",
        f"context={long_context}",
    )
    answer = json.loads(output)
    assert long_context[answer["start"] : answer["end"]] == answer["answer"]
    # ~500 tokens in windows of 128: every window of the one record reached the spans.
    assert windows_seen.count(0) >= 4
    result = CliRunner().invoke(
        cli, ["predict", "qa", "--model", str(qa_run / "model"), "--field", "question=Who?"]
    )
    assert result.exit_code == 1 and "has no 'context' field" in result.output


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("nested", "data[0] has no 'paragraphs'"),
        ("mismatch", "answer_start 0 points at"),
        ("no-answers", "has no 'answers' column"),
        ("empty-context", "has an empty context"),
    ],
)
def test_bad_squad_files_fail_in_one_line(tiny_qa_bert, tmp_path, setup, message) -> None:
    path = tmp_path / ("bad.json" if setup == "nested" else "bad.jsonl")
    row = {
        "id": "q9",
        "context": "Denver won.",
        "question": "Who won?",
        "answers": {"text": ["Denver"], "answer_start": [0]},
    }
    if setup == "nested":
        path.write_text(json.dumps({"data": [{"title": "x"}], "version": "1.1"}))
    elif setup == "mismatch":
        path.write_text(json.dumps({**row, "answers": {"text": ["won"], "answer_start": [0]}}))
    elif setup == "no-answers":
        path.write_text(json.dumps({k: v for k, v in row.items() if k != "answers"}))
    else:
        path.write_text(json.dumps({**row, "context": ""}))
    result = CliRunner().invoke(
        cli,
        ["run", "qa", f"model={tiny_qa_bert}", f"data.train_path={path}", f"data.eval_path={path}"],
    )
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(qa_run: Path) -> None:
    command = ["eval", "qa", "--model", str(qa_run / "model"), "--json"]
    two = run_nlptasks(*command, processes=2)
    one = run_nlptasks(*command)
    two_metrics = json.loads(two.stdout)
    one_metrics = json.loads(one.stdout)
    assert two_metrics["exact_match"] == one_metrics["exact_match"]
    assert two_metrics["f1"] == pytest.approx(one_metrics["f1"], abs=1e-9)
    assert two_metrics["loss"] == pytest.approx(one_metrics["loss"], rel=1e-5)


def _squad_v2_like(path: Path, count: int = 120) -> tuple[int, int]:
    """Real dev questions as flat jsonl; every third one made unanswerable by pairing it with
    a paragraph of another article and no answers. Returns (answerable, unanswerable)."""
    rows = squad_questions(DEV_JSON, count)
    far = squad_questions(DEV_JSON)[-1]["context"]  # the last article: another topic
    for i, row in enumerate(rows):
        if i % 3 == 2:
            row["context"] = far
            row["answers"] = {"text": [], "answer_start": []}
    path.write_text("\n".join(json.dumps(r) for r in rows))
    unanswerable = len(rows[2::3])
    return len(rows) - unanswerable, unanswerable


def test_squad_2_data_needs_version_2_and_reports_the_breakdown(tiny_qa_bert, tmp_path) -> None:
    data = tmp_path / "v2.jsonl"
    answerable, unanswerable = _squad_v2_like(data)
    common = [
        "run",
        "qa",
        f"model={tiny_qa_bert}",
        f"data.train_path={data}",
        f"data.eval_path={data}",
        "train.max_steps=4",
        "train.batch_size=16",
        "train.mixed_precision=no",
        *TINY_WINDOWS,
        "--quiet",
    ]
    refused = CliRunner().invoke(cli, [*common, "--output-dir", str(tmp_path / "v1")])
    assert refused.exit_code == 1
    assert f"{unanswerable} questions without an answer" in refused.output
    assert "options.version_2_with_negative=true" in refused.output

    invoke(
        *common,
        "options.version_2_with_negative=true",
        "train.metric_for_best=HasAns_f1",  # a v2 metric is a valid choice
        "--output-dir",
        str(tmp_path / "v2"),
    )
    metrics = json.loads((tmp_path / "v2/results.json").read_text())["metrics"]["eval"]
    assert set(metrics) == {
        "loss",
        "exact_match",
        "f1",
        "HasAns_exact",
        "HasAns_f1",
        "NoAns_exact",
        "NoAns_f1",
    }
    # The overall scores are the question-weighted mean of the two groups.
    total = answerable + unanswerable
    for name, has, no in (
        ("exact_match", "HasAns_exact", "NoAns_exact"),
        ("f1", "HasAns_f1", "NoAns_f1"),
    ):
        mixed = (metrics[has] * answerable + metrics[no] * unanswerable) / total
        assert metrics[name] == pytest.approx(mixed)

    # A very low threshold says "no answer" to everything; a very high one never does.
    records = [{"question": "Who won?", "context": "Denver won the game."}]
    model = str(tmp_path / "v2/model")
    import nlptasks

    never = nlptasks.predict(
        "qa", model, records, overrides=["options.null_score_diff_threshold=1e9"]
    )
    always = nlptasks.predict(
        "qa", model, records, overrides=["options.null_score_diff_threshold=-1e9"]
    )
    assert never[0]["answer"] != "" and never[0]["start"] >= 0
    assert always[0] == {"answer": "", "score": always[0]["score"], "start": -1, "end": -1}


def test_review_cases_of_bad_and_odd_data(tokenizer, tmp_path) -> None:
    # A question longer than a whole window is an error naming it.
    settings = WindowSettings(max_length=64, doc_stride=8, max_question_length=10)
    with pytest.raises(DataError, match=r"Question 'q7': the question has \d+ tokens"):
        make_windows(tokenizer, ["who " * 100], ["Denver won."], settings, names=["Question 'q7'"])
    # A context the tokenizer keeps nothing of, and an answer with blanks at its edges.
    made = make_windows(
        tokenizer,
        ["who?", "where?"],
        ["\u200b\u200b", "Paris is nice. "],
        settings,
        answers=[
            {"text": ["\u200b"], "answer_start": [0]},
            {"text": ["nice. "], "answer_start": [9]},
        ],
    ).columns
    assert made["start_positions"][0] == made["cls_index"][0]
    start, end = made["start_positions"][1], made["end_positions"][1]
    assert start != made["cls_index"][1]
    assert "Paris is nice. "[made["offset_start"][1][start] : made["offset_end"][1][end]] == "nice."
    # skip drops a bad answer but keeps the question while it has good ones.
    row = _one_question(answers={"text": ["Denver", "won"], "answer_start": [0, 0]})
    with pytest.warns(UserWarning, match="Dropped 1 train answers"):
        kept = normalise_split(row, "train", COLUMNS, "skip")
    assert kept["answers"] == [{"text": ["Denver"], "answer_start": [0]}]
    # A nested file whose answers are malformed names the question, not an Arrow type.
    nested = tmp_path / "mixed.json"
    qas = [
        {"id": "a1", "question": "q?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "a2", "question": "q?", "answers": [{"text": 1999, "answer_start": 0}]},
    ]
    nested.write_text(
        json.dumps(
            {"data": [{"title": "t", "paragraphs": [{"context": "Paris 1999", "qas": qas}]}]}
        )
    )
    loaded = datasets.load_dataset("json", data_files=str(nested), split="train")
    with pytest.raises(DataError, match="Question 'a2' in the train data has malformed answers"):
        read_examples(loaded, "train")
    # A flat file with a column called data is flat, not nested.
    flat = _one_question().add_column("data", ["x"]).rename_column("question", "query")
    columns = {**COLUMNS, "question": "query"}
    assert normalise_split(flat, "train", columns, "error")["question"] == ["Who won?"]
    # The articles of a SQuAD file without the {"data": ...} wrapper are read too.
    bare = tmp_path / "bare.json"
    bare.write_text(
        json.dumps([{"title": "t", "paragraphs": [{"context": "Paris 1999", "qas": qas[:1]}]}])
    )
    loaded = datasets.load_dataset("json", data_files=str(bare), split="train")
    assert read_examples(loaded, "train")["id"] == ["a1"]


def test_undefined_metrics_are_written_as_json_null(tmp_path) -> None:
    from nlptasks.runs.card import model_card
    from nlptasks.runs.rundir import write_json

    write_json(tmp_path / "r.json", {"metrics": {"NoAns_f1": float("nan"), "f1": 50.0}})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["metrics"] == {"NoAns_f1": None, "f1": 50.0}
    card = model_card(
        run_name="r",
        task="qa",
        pipeline_tag="question-answering",
        base_model=None,
        model_name="m",
        dataset_name="d",
        dataset_split="s",
        metrics={"NoAns_f1": float("nan"), "f1": 50.0},
        recipe_yaml="",
        extra={},
        train_summary={},
    )
    assert "nan" not in card.split("---")[1] and "value: 50.0" in card


def test_the_offline_recipe_finds_its_squad_files(tmp_path, monkeypatch) -> None:
    from nlptasks.builtins.qa import datasets as qa_datasets

    loaded = qa_datasets.load_squad_subset()
    assert (len(loaded["train"]), len(loaded["validation"])) == (3807, 10570)
    monkeypatch.setenv("NLPTASKS_DATA", str(tmp_path))
    assert qa_datasets.data_folders()[0] == tmp_path  # $NLPTASKS_DATA is looked at first
    monkeypatch.setattr(qa_datasets, "data_folders", lambda: [tmp_path])
    with pytest.raises(DataError, match="Set NLPTASKS_DATA to the folder that holds squad_v1.1/"):
        qa_datasets.load_squad_subset()
