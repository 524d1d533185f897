"""`nlptasks predict --explain`: token attributions that add up (IG completeness), that
point at the words the model uses (deletion test on real SST-2 dev sentences), for every
built-in task through the CLI, rendered for the terminal and as an offline HTML page; and
one-line errors for a task that cannot explain and for a missing captum."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import nlptasks
from nlptasks.cli import cli
from nlptasks.explain import CAPTUM_MISSING, explanation_problems
from nlptasks.explain.render import print_explanations, render_html
from tests.conftest import SST2, sst2_rows

REPO = Path(__file__).resolve().parent.parent


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def dev_sentences(count: int, min_words: int = 8) -> list[tuple[str, int]]:
    """The first ``count`` SST-2 dev sentences of at least ``min_words`` words."""
    return [(s, y) for s, y in sst2_rows("dev") if len(s.split()) >= min_words][:count]


@pytest.fixture(scope="module")
def learned(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT (vocabulary from SST-2) fine-tuned on 5000 SST-2 training sentences for 3
    epochs with `nlptasks run` (about 10 s; about 74% dev accuracy): a model that learned
    something, so its attributions can be judged."""
    work = tmp_path_factory.mktemp("explain")
    train = work / "train.tsv"
    rows = sst2_rows("train", 5000)
    train.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    result = nlptasks.run(
        "sentiment",
        "minilm",
        f"model={tiny_bert}",
        f"data.train_path={train}",
        f"data.eval_path={SST2 / 'dev.tsv'}",
        "train.epochs=3",
        "train.learning_rate=1e-3",
        "train.batch_size=32",
        "train.eval_every=",
        output_dir=str(work / "run"),
    )
    assert result.metrics["accuracy"] > 0.65, result.metrics  # it learned something
    return work / "run" / "model"


@pytest.fixture(scope="module")
def explained(learned: Path) -> list[dict[str, Any]]:
    """Predictions with explanations of 40 real SST-2 dev sentences."""
    texts = [s for s, _ in dev_sentences(40)]
    return nlptasks.predict("sentiment", str(learned), texts, explain=True)


# --------------------------------------------------------------------------- the numbers
def test_attributions_add_up_to_the_score_minus_the_baseline(
    learned: Path, explained: list[dict[str, Any]]
) -> None:
    """IG completeness: sum(attributions) = p(x) - p(baseline) for the predicted class,
    where p(x) is the prediction's own probability and p(baseline) that of the [PAD]
    sequence, both computed here again with transformers alone."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(learned).eval()
    tokenizer = AutoTokenizer.from_pretrained(learned)
    for prediction in explained:
        e = prediction["explanation"]
        assert explanation_problems(e) == []
        assert e["target"] == f"probability of '{prediction['label']}'"
        target = model.config.label2id[prediction["label"]]
        ids = tokenizer(prediction["text"])["input_ids"]
        assert len(e["tokens"]) == len(ids)
        blank = [i if i in tokenizer.all_special_ids else tokenizer.pad_token_id for i in ids]
        with torch.no_grad():
            p = model(torch.tensor([ids, blank])).logits.softmax(-1)[:, target].tolist()
        assert e["score"] == pytest.approx(p[0], abs=1e-5)
        # The prediction ran in the recipe's precision (bf16 on a CPU that has it), the
        # attributions in float32: the same probability up to bf16's rounding.
        assert e["score"] == pytest.approx(prediction["score"], abs=0.01)
        assert e["baseline_score"] == pytest.approx(p[1], abs=1e-5)
        difference = p[0] - p[1]
        # 50 Gauss-Legendre steps: measured |error| < 1e-6 here; 1% of the difference is
        # what a user may rely on.
        assert sum(e["attributions"]) == pytest.approx(difference, rel=0.01, abs=1e-4)
        assert e["convergence_delta"] == pytest.approx(
            sum(e["attributions"]) - difference, abs=1e-4
        )
        assert e["attributions"][0] == 0.0 and e["attributions"][-1] == 0.0  # [CLS], [SEP] kept


def test_removing_the_top_tokens_changes_the_prediction_more_than_random_ones(
    learned: Path, explained: list[dict[str, Any]]
) -> None:
    """Deletion test on 40 real SST-2 dev sentences: dropping the k tokens with the largest
    attributions lowers the predicted class's probability more than dropping k random ones
    (k = a fifth of the words), on average."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(learned).eval()
    tokenizer = AutoTokenizer.from_pretrained(learned)
    chance = random.Random(0)

    def probability(ids: list[int], target: int) -> float:
        with torch.no_grad():
            return float(model(torch.tensor([ids])).logits.softmax(-1)[0, target])

    top_drops, random_drops = [], []
    for prediction in explained:
        e = prediction["explanation"]
        ids = tokenizer(prediction["text"])["input_ids"]
        target = model.config.label2id[prediction["label"]]
        words = list(range(1, len(ids) - 1))  # not [CLS] / [SEP]
        k = max(1, len(words) // 5)
        top = sorted(words, key=lambda i: e["attributions"][i], reverse=True)[:k]

        def without(drop: list[int], ids: list[int] = ids) -> list[int]:
            return [t for i, t in enumerate(ids) if i not in drop]

        before = probability(ids, target)
        top_drops.append(before - probability(without(top), target))
        draws = [before - probability(without(chance.sample(words, k)), target) for _ in range(5)]
        random_drops.append(sum(draws) / len(draws))
    top_mean = sum(top_drops) / len(top_drops)
    random_mean = sum(random_drops) / len(random_drops)
    assert top_mean > 2 * random_mean and top_mean > 0.05, (top_mean, random_mean)


# ------------------------------------------------------------------------------ the CLI
def _check_lines(stdout: str, count: int) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert len(lines) == count, stdout
    for line in lines:
        assert explanation_problems(line["explanation"]) == [], line["explanation"]
    return lines


def test_sentiment_explains_through_the_cli_and_writes_an_offline_page(
    learned: Path, tmp_path: Path
) -> None:
    page = tmp_path / "why.html"
    text = "a gripping , funny and moving film"
    code, stdout, stderr = invoke(
        "predict", "sentiment", "--model", str(learned), "--explain-html", str(page), text
    )
    assert code == 0, stderr
    [line] = _check_lines(stdout, 1)  # --explain-html implies --explain; stdout stays JSON
    tokens = line["explanation"]["tokens"]
    assert tokens[0] == "[CLS]" and tokens[1] == "a" and tokens[-1] == "[SEP]"
    html = page.read_text(encoding="utf-8")
    assert "gripping" in html and html.startswith("<!DOCTYPE html>")
    for reference in ("://", "//", "<script", "<link", "src=", "href=", "url(", "@import"):
        assert reference not in html, reference


@pytest.mark.parametrize("task", ["qa", "generation", "translation"])
def test_each_builtin_task_explains_through_the_cli(
    task: str, tiny_bert: Path, tiny_gpt2: Path, tiny_bart: Path, tmp_path: Path
) -> None:
    """A JSON line per record with an explanation whose lists pair up; generated text gets
    one log-probability per output token, shown on the page too."""
    model, args = {
        "qa": (tiny_bert, ["-f", "question=what is it ?", "-f", "context=a charming film ."]),
        "generation": (tiny_gpt2, ["--max-new-tokens", "4", "--greedy", "a charming"]),
        "translation": (tiny_bart, ["--max-new-tokens", "4", "a charming film"]),
    }[task]
    extra = ["--set", "options.doc_stride=30"] if task == "qa" else []
    page = tmp_path / "page.html"
    code, stdout, stderr = invoke(
        "predict",
        task,
        "--model",
        str(model),
        "--allow-untrained-head",
        "--explain-html",
        str(page),
        *extra,
        *args,
    )
    assert code == 0, stderr
    [line] = _check_lines(stdout, 1)
    e = line["explanation"]
    assert ("output: " in page.read_text(encoding="utf-8")) == (task != "qa")
    assert len(e["tokens"]) == len(e["attributions"]) > 0
    assert sum(e["attributions"]) == pytest.approx(
        e["score"] - e["baseline_score"], rel=0.02, abs=1e-4
    )
    if task == "qa":
        # The explained span is the predicted answer: its tokens spell it out.
        first, last = e["start"]["token"], e["end"]["token"]
        assert line["answer"] and first <= last
        spelled = "".join(t.removeprefix("##") for t in e["tokens"][first : last + 1])
        assert spelled == line["answer"].replace(" ", "").lower(), (e["tokens"], line)
        assert e["target"] == "start logit + end logit of the answer span"
        assert e["score"] == pytest.approx(e["start"]["score"] + e["end"]["score"])
    else:
        assert e["retokenised"] is True and "tokenised again" in e["note"]
        assert len(e["output_tokens"]) == len(e["logprobs"]) > 0
        assert all(lp <= 0 for lp in e["logprobs"])
        assert e["score"] == pytest.approx(sum(e["logprobs"][: e["explained_output_tokens"]]))
    if task == "generation":
        _check_logprobs_against_a_plain_forward_pass(tiny_gpt2, "a charming", line)


def _check_logprobs_against_a_plain_forward_pass(
    model_dir: Path, prompt: str, line: dict[str, Any]
) -> None:
    """Each output token's log-probability equals log_softmax of one plain forward pass of
    prompt + output at the position before it (transformers alone, no slicing shared with
    the code under test)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt_ids = tokenizer(prompt)["input_ids"]
    output_ids = tokenizer(line["generated_text"], add_special_tokens=False)["input_ids"]
    ids = prompt_ids + output_ids
    with torch.no_grad():
        table = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    expected = [float(table[len(prompt_ids) + i - 1, token]) for i, token in enumerate(output_ids)]
    e = line["explanation"]
    assert len(e["logprobs"]) == len(expected) > 0
    assert e["logprobs"] == pytest.approx(expected, abs=1e-4)
    # Greedy: the first generated token is the most likely one after the prompt.
    assert int(table[len(prompt_ids) - 1].argmax()) == output_ids[0]


def test_the_terminal_view_colours_each_token(explained: list[dict[str, Any]]) -> None:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=200)
    print_explanations(explained[:2], console)
    shown = out.getvalue()
    assert "\x1b[" in shown and "48;2;" in shown  # truecolour backgrounds
    assert explained[0]["explanation"]["target"] in shown
    html = render_html(explained[:2])
    assert html.count('class="record"') == 2


def test_tokens_are_joined_as_the_tokenizer_marks_words() -> None:
    from nlptasks.explain.render import words

    def shown(tokens: list[str], style: str) -> str:
        return "".join(sep + text for sep, text in words(tokens, style))

    assert shown(["air", "air", "air"], "marked") == "airairair"  # byte-level BPE
    assert shown(["In", " 198", "4", "."], "marked") == "In 1984."
    assert shown(["[CLS]", "a", "charm", "##ing", "film"], "wordpiece") == "[CLS] a charming film"


def test_the_tokenizer_style_is_read_from_the_tokenizer(
    tiny_bert: Path, tiny_gpt2: Path, tiny_bart: Path
) -> None:
    from transformers import AutoTokenizer

    from nlptasks.explain.tokens import token_style

    styles = [
        token_style(AutoTokenizer.from_pretrained(m)) for m in (tiny_bert, tiny_gpt2, tiny_bart)
    ]
    assert styles == ["wordpiece", "marked", "marked"]


# ------------------------------------------------------------------------------- errors
def test_a_bad_html_file_is_refused_before_predicting(tmp_path: Path) -> None:
    """Checked before the model is even read (the model folder here is empty), in one line."""
    code, stdout, stderr = invoke(
        "predict",
        "sentiment",
        "--model",
        str(tmp_path),
        "--explain-html",
        str(tmp_path / "missing" / "why.html"),
        "a gripping film",
    )
    assert code != 0 and stdout == ""
    assert stderr.strip().count("\n") == 0, stderr
    assert "Cannot write --explain-html" in stderr
    assert "does not exist" in stderr


def test_a_task_without_explains_gets_one_line(isolated_plugins: Any, tmp_path: Path) -> None:
    from tests.plugins.token_task import TASK

    isolated_plugins("tests.plugins.token_task")
    code, stdout, stderr = invoke("predict", TASK, "--model", str(tmp_path), "--explain", "x")
    assert code != 0 and stdout == ""
    assert stderr.strip().count("\n") == 0, stderr
    assert f"Task '{TASK}' cannot explain its predictions" in stderr
    assert "explain() method" in stderr


def test_a_missing_captum_is_one_line(tmp_path: Path) -> None:
    """captum hidden from a real `nlptasks` process (sys.modules['captum'] = None makes its
    import fail, as when it is not installed)."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['captum'] = None\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nlptasks",
            "predict",
            "sentiment",
            "--model",
            str(tmp_path),
            "--explain",
            "a fine film",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"Error: {CAPTUM_MISSING}"], done.stderr
