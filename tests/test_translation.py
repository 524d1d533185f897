"""The translation task: parallel data, target-only loss for prompted models, sacreBLEU
scores, and run / eval / predict end to end with a tiny BART on real WMT16 en-ro text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from click.testing import CliRunner, Result

from nlptasks import ConfigError, DataError
from nlptasks.builtins.generation.data import IGNORE
from nlptasks.builtins.translation.data import read_parallel, read_tsv
from nlptasks.builtins.translation.metrics import (
    sacrebleu_metric,
    scores_from_statistics,
    sentence_statistics,
    signatures,
)
from nlptasks.builtins.translation.task import LineEnd, PromptedTranslator
from nlptasks.cli import cli
from nlptasks.testing import make_tiny_bart, make_tiny_gpt2
from nlptasks.testing.processes import run_nlptasks
from tests.conftest import SHARED_DATA

WMT = SHARED_DATA / "wmt16_en_ro"
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def lines(name: str, limit: int, start: int = 0) -> list[str]:
    return (WMT / name).read_text(encoding="utf-8").splitlines()[start : start + limit]


def write_lines(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(f"{r}\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_mt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = lines("train.europarl-v7.first10k.en", 2000) + lines(
        "train.europarl-v7.first10k.ro", 2000
    )
    return make_tiny_bart(tmp_path_factory.mktemp("tiny-bart"), texts, dropout=0)


@pytest.fixture
def parallel(tmp_path: Path) -> list[str]:
    """Overrides pointing the task at line-aligned en / ro files (48 train, 24 eval pairs)."""
    files = {
        "source_path": write_lines(
            tmp_path / "train.en", lines("train.europarl-v7.first10k.en", 48)
        ),
        "target_path": write_lines(
            tmp_path / "train.ro", lines("train.europarl-v7.first10k.ro", 48)
        ),
        "eval_source_path": write_lines(tmp_path / "dev.en", lines("newstest2016.en", 24)),
        "eval_target_path": write_lines(tmp_path / "dev.ro", lines("newstest2016.ro", 24)),
    }
    return [f"options.{k}={v}" for k, v in files.items()]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


# ------------------------------------------------------------------------------- data
def test_parallel_files_pair_line_i_with_line_i(tmp_path: Path) -> None:
    pairs = read_parallel(
        str(write_lines(tmp_path / "a.en", ["one", "two", "three"])),
        str(write_lines(tmp_path / "a.ro", ["unu", "doi", "trei"])),
    )
    assert pairs["source"] == ["one", "two", "three"]
    assert pairs["target"] == ["unu", "doi", "trei"]
    assert pairs["line"] == [1, 2, 3]


def test_misaligned_parallel_files_name_both_counts(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "a.en", ["one", "two", "three"])
    target = write_lines(tmp_path / "a.ro", ["unu", "doi"])
    with pytest.raises(DataError) as error:
        read_parallel(str(source), str(target))
    assert "has 3 lines" in str(error.value) and "has 2" in str(error.value)
    assert str(source) in str(error.value) and str(target) in str(error.value)


def test_tsv_with_or_without_a_header(tmp_path: Path) -> None:
    names = (["en", "source"], ["ro", "target"])
    layouts = {
        "h.tsv": "en\tro\nHello\tSalut\nYes\tDa\n",
        "b.tsv": "Hello\tSalut\nYes\tDa\n",
        "reversed.tsv": "ro\ten\nSalut\tHello\nDa\tYes\n",  # the header says the order
        "bom.tsv": "\ufeffen\tro\nHello\tSalut\nYes\tDa\n",  # as Windows editors save
    }
    for name, text in layouts.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        pairs = read_tsv(str(path), "data.train_path", *names)
        assert pairs["source"] == ["Hello", "Yes"], name
        assert pairs["target"] == ["Salut", "Da"], name
    broken = tmp_path / "x.tsv"
    broken.write_text("Hello\tSalut\nYes\tDa\textra\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2 has 3 tab-separated columns"):
        read_tsv(str(broken), "data.train_path", *names)


def _task_and_splits(model: Path, overrides: list[str]):
    from nlptasks import data
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import load_task, source_reader

    recipe = load_recipe("translation", "smollm2", [f"model={model}", *overrides])
    task = load_task("translation")
    splits = data.load_splits(recipe.data, read_source=source_reader(task, recipe))
    if recipe.options.source_path:  # the files the options name are the training data
        assert (
            task.read_source(recipe, "train", lambda: None)["source"]
            == read_parallel(recipe.options.source_path, recipe.options.target_path)["source"]
        )
    return task, task.prepare_data(splits, recipe), recipe


def test_every_layout_gives_the_same_pairs(tmp_path: Path, tiny_mt: Path) -> None:
    en, ro = lines("newstest2016.en", 5), lines("newstest2016.ro", 5)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"translation": {"en": e, "ro": r}}) + "\n"
            for e, r in zip(en, ro, strict=True)
        ),
        encoding="utf-8",
    )
    flat = tmp_path / "flat.jsonl"
    flat.write_text(
        "".join(json.dumps({"en": e, "ro": r}) + "\n" for e, r in zip(en, ro, strict=True)),
        encoding="utf-8",
    )
    tsv = tmp_path / "t.tsv"
    tsv.write_text("".join(f"{e}\t{r}\n" for e, r in zip(en, ro, strict=True)), encoding="utf-8")
    files = [
        f"options.eval_source_path={write_lines(tmp_path / 'e.en', en)}",
        f"options.eval_target_path={write_lines(tmp_path / 'e.ro', ro)}",
    ]
    wide = tmp_path / "wide.tsv"  # more than two columns: the core's tsv reader, by name
    wide.write_text(
        "id\ten\tro\n"
        + "".join(f"{i}\t{e}\t{r}\n" for i, (e, r) in enumerate(zip(en, ro, strict=True))),
        encoding="utf-8",
    )
    langs = ["options.source_lang=en", "options.target_lang=ro"]
    for overrides in (
        [f"data.train_path={wide}", f"data.eval_path={wide}"],
        [f"data.train_path={jsonl}", f"data.eval_path={jsonl}"],
        [f"data.train_path={flat}", f"data.eval_path={flat}"],
        [f"data.train_path={tsv}", f"data.eval_path={tsv}"],
        [f"data.train_path={tsv}", *files],
    ):
        _, splits, _ = _task_and_splits(tiny_mt, [*langs, *overrides])
        assert splits["eval"]["source"] == en, overrides
        assert splits["eval"]["target"] == ro, overrides


def test_empty_pairs_are_skipped_and_counted_or_refused(tmp_path: Path, tiny_mt: Path) -> None:
    en = write_lines(tmp_path / "a.en", ["one", "", "three", "four"])
    ro = write_lines(tmp_path / "a.ro", ["unu", "doi", "trei", "  "])
    overrides = [
        "options.source_lang=en",
        "options.target_lang=ro",
        f"options.source_path={en}",
        f"options.target_path={ro}",
        f"options.eval_source_path={en}",
        f"options.eval_target_path={ro}",
    ]
    with pytest.warns(UserWarning, match=r"Skipped 2 of 4 train pairs .*first at line 2"):
        _, splits, _ = _task_and_splits(tiny_mt, overrides)
    assert splits["train"]["source"] == ["one", "three"]
    with pytest.raises(DataError, match="line 2 has an empty source"):
        _task_and_splits(tiny_mt, [*overrides, "options.empty_pairs=error"])


# ------------------------------------------------------------------------------ metrics
def test_bleu_and_chrf_equal_sacrebleu_with_its_signature() -> None:
    references = lines("newstest2016.ro", 60)
    # Hypotheses that are partly right: every other word dropped from half of them.
    hypotheses = [" ".join(r.split()[::2]) if i % 2 else r for i, r in enumerate(references)]
    rows = sentence_statistics(hypotheses, references)
    sums = {key: sum(row[key] for row in rows) for key in rows[0]}
    scores = scores_from_statistics(sums)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)
    assert 20 < scores["bleu"] < 90  # neither perfect nor nothing
    assert signatures()["bleu"] == (
        f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    )
    assert signatures()["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|")
    for name, metric in (("bleu", sacrebleu.BLEU()), ("chrf", sacrebleu.CHRF())):
        metric.corpus_score(hypotheses, [references])
        assert signatures()[name] == str(metric.get_signature())
    # The same two functions as an evaluate.Metric, fed in batches.
    metric = sacrebleu_metric()
    metric.add_batch(predictions=hypotheses[:25], references=references[:25])
    metric.add_batch(predictions=hypotheses[25:], references=references[25:])
    assert metric.compute() == pytest.approx(scores)
    assert scores_from_statistics({}) == {}  # an evaluation that did not translate


# ---------------------------------------------------------------- prompted (decoder-only)
@pytest.mark.parametrize("chat", [False, True])
def test_prompted_models_learn_the_target_only(tmp_path: Path, chat: bool) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = lines("train.europarl-v7.first10k.en", 500) + lines(
        "train.europarl-v7.first10k.ro", 500
    )
    model_dir = make_tiny_gpt2(tmp_path / "gpt2", texts, dropout=0)
    # Pairs that fit the tiny model's 128 positions with the prompt.
    pairs = zip(lines("newstest2016.en", 200), lines("newstest2016.ro", 200), strict=True)
    short = [(e, r) for e, r in pairs if len(e.split()) + len(r.split()) < 16][:4]
    if chat:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        tokenizer.chat_template = CHATML
        tokenizer.save_pretrained(model_dir)
    task, splits, recipe = _task_and_splits(
        model_dir,
        [
            "options.source_lang=en",
            "options.target_lang=ro",
            f"options.source_path={write_lines(tmp_path / 't.en', [e for e, _ in short])}",
            f"options.target_path={write_lines(tmp_path / 't.ro', [r for _, r in short])}",
            "data.eval_fraction=0.5",
        ],
    )
    model, tokenizer = task.build_model(str(model_dir), recipe)
    assert isinstance(task.translator, PromptedTranslator) and task.translator.chat is chat
    features = task.preprocess(splits["train"], tokenizer, recipe)
    for row, feature in zip(splits["train"], features, strict=True):
        labels = feature["labels"]
        learned = [t for t in labels if t != IGNORE]
        # The target and its EOS, nothing of the prompt; the prompt holds the source.
        assert tokenizer.decode(learned[:-1]) == row["target"]
        assert learned[-1] == tokenizer.eos_token_id
        prompt_length = labels.index(learned[0])
        assert all(t == IGNORE for t in labels[:prompt_length])
        assert feature["input_ids"][prompt_length:] == learned
        prompt = tokenizer.decode(feature["input_ids"][:prompt_length])
        assert row["source"] in prompt and "English" in prompt and "Romanian" in prompt
        assert ("<|im_start|>assistant" in prompt) is chat
    batch = task.collate([features[i] for i in range(len(features))])
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    step = task.forward(model, batch)
    assert step.loss.shape == step.count.shape == (len(features),)
    # By hand: cross-entropy of each target token given everything before it.
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    total = torch.zeros(())
    for r in range(len(batch["labels"])):
        for t in range(1, batch["labels"].shape[1]):
            if batch["labels"][r, t] != IGNORE:
                total += F.cross_entropy(logits[r, t - 1], batch["labels"][r, t])
    assert step.loss.sum().item() == pytest.approx(total.item(), rel=1e-5)
    assert step.count.tolist() == [len([t for t in f["labels"] if t != IGNORE]) for f in features]


def test_a_completion_prompt_puts_the_space_with_the_first_word(tmp_path: Path) -> None:
    """``options.prompt_separator=" "`` after "...French:": the prompt ends at the colon and
    the learned target starts with " word", as the tokenizer sees it in running text."""
    texts = [*lines("train.europarl-v7.first10k.en", 300), "Romanian:"]
    model_dir = make_tiny_gpt2(tmp_path / "gpt2", texts, dropout=0)
    pairs = [("The house is red.", "Casa este rosie.")] * 4
    task, splits, recipe = _task_and_splits(
        model_dir,
        [
            "options.source_lang=en",
            "options.target_lang=ro",
            f"options.source_path={write_lines(tmp_path / 't.en', [e for e, _ in pairs])}",
            f"options.target_path={write_lines(tmp_path / 't.ro', [r for _, r in pairs])}",
            "data.eval_fraction=0.5",
            "options.chat_template=false",
            "options.prompt=English: {text}\nRomanian:",
            "options.prompt_separator= ",  # a string option takes the text as typed
        ],
    )
    _, tokenizer = task.build_model(str(model_dir), recipe)
    feature = task.preprocess(splits["train"], tokenizer, recipe)[0]
    labels = feature["labels"]
    start = next(i for i, t in enumerate(labels) if t != IGNORE)
    assert tokenizer.decode(feature["input_ids"][:start]).endswith(
        "English: The house is red.\nRomanian:"
    )
    learned = labels[start:-1]  # the EOS last
    assert learned == tokenizer(" Casa este rosie.", add_special_tokens=False)["input_ids"]
    assert 'then " "' in task.translator.card()["prompt"]
    with pytest.raises(ConfigError, match="prompt_separator. must be a line break or a space"):
        _task_and_splits(
            model_dir,
            ["options.source_lang=en", "options.target_lang=ro", "options.prompt_separator=--"],
        )


def test_prompted_generation_stops_each_row_after_its_first_line(tmp_path: Path) -> None:
    """A base model never says EOS: a row is done at its first line break after some text
    (only that line is kept), not at the token budget; leading blank lines do not end it."""
    from transformers import AutoTokenizer

    texts = lines("train.europarl-v7.first10k.en", 300)
    tokenizer = AutoTokenizer.from_pretrained(make_tiny_gpt2(tmp_path / "gpt2", texts))
    line_end = LineEnd(tokenizer)

    vocabulary = tokenizer.get_vocab()

    def token(piece: str) -> list[int]:
        [found] = tokenizer(piece, add_special_tokens=False)["input_ids"]
        return [found]

    newline, space = token("\n"), token(" ")
    # A word the tiny vocabulary holds whole (byte-level BPE: no leading space marker).
    word = [next(i for p, i in sorted(vocabulary.items()) if p.isalpha() and len(p) > 2)]
    assert line_end.breaks.tolist() and newline[0] in line_end.breaks.tolist()

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompt = ids("The house") + newline  # a prompt may hold line breaks: they do not count
    rows = {
        "text then a break": (word + newline, True),
        "a leading break only": (space + newline, False),
        "a break before the text": (newline + word, False),
        "text, no break yet": (word + word, False),
    }
    batch = torch.tensor([prompt + new for new, _ in rows.values()])
    done = line_end.after(len(prompt))(batch, None)
    assert done.tolist() == [want for _, want in rows.values()]


def test_eval_generates_as_many_tokens_as_the_data_needs(
    tiny_mt: Path, parallel: list[str]
) -> None:
    """Not transformers' 20-token default (t5-small looked like 7 BLEU: transformers #10032)."""
    task, splits, recipe = _task_and_splits(
        tiny_mt, ["options.source_lang=en", "options.target_lang=ro", *parallel]
    )
    model, tokenizer = task.build_model(str(tiny_mt), recipe)
    features = task.preprocess(splits["eval"], tokenizer, recipe)
    longest = max(len(ids) for ids in features["labels"])
    assert longest > 40
    budget = min(128, -(-longest * 12 // 10) + 5)
    assert set(features["max_new_tokens"]) == {budget}  # the split's, in every feature
    seen: dict[str, object] = {}
    real_generate = model.generate

    def spy(**kwargs: object) -> torch.Tensor:
        seen.update(kwargs)
        return real_generate(**kwargs)

    model.generate = spy
    task.generate_step(model.eval(), task.collate([features[0]]), recipe.generation)
    assert seen["max_new_tokens"] == budget > 20


# ------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained_mt(tiny_mt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mt-data")
    files = {
        "source_path": write_lines(folder / "train.en", lines("train.europarl-v7.first10k.en", 48)),
        "target_path": write_lines(folder / "train.ro", lines("train.europarl-v7.first10k.ro", 48)),
        "eval_source_path": write_lines(folder / "dev.en", lines("newstest2016.en", 24)),
        "eval_target_path": write_lines(folder / "dev.ro", lines("newstest2016.ro", 24)),
    }
    run = folder / "run"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "translation",
            f"model={tiny_mt}",
            "options.source_lang=en",
            "options.target_lang=ro",
            "options.max_source_length=128",
            "options.max_target_length=128",
            *[f"options.{k}={v}" for k, v in files.items()],
            "train.max_steps=3",
            "train.batch_size=16",
            "train.learning_rate=1e-3",
            "train.mixed_precision=no",
            "generation.num_beams=2",
            "generation.max_new_tokens=12",
            "--output-dir",
            str(run),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return run


def test_a_tiny_bart_runs_end_to_end(trained_mt: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    results = json.loads((trained_mt / "results.json").read_text())
    metrics = results["metrics"]["eval"]
    assert set(metrics) == {"loss", "bleu", "chrf"}
    assert results["metric_signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert results["data"] == {**results["data"], "train_examples": 48, "eval_examples": 24}
    model = AutoModelForSeq2SeqLM.from_pretrained(trained_mt / "model")
    assert model.config.model_type == "bart"
    AutoTokenizer.from_pretrained(trained_mt / "model")
    card = (trained_mt / "README.md").read_text()
    assert "pipeline_tag: translation" in card and "type: bleu" in card
    assert "encoder-decoder" in card and "en -> ro" in card  # the task's model_card()

    # The reported scores are sacreBLEU's on what predict generates for the eval sources.
    sources = lines("newstest2016.en", 24)
    references = lines("newstest2016.ro", 24)
    from nlptasks.runner import predict

    outputs = predict("translation", str(trained_mt / "model"), sources)
    assert [o["text"] for o in outputs] == sources
    hypotheses = [o["translation"] for o in outputs]
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)
    assert metrics["chrf"] > 0  # BLEU of a barely trained model is 0: chrF carries the check

    # nlptasks eval on the run's own recipe gives the run's final numbers.
    result = invoke("eval", "translation", "--model", str(trained_mt / "model"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == pytest.approx(metrics, rel=1e-6)


def test_results_name_the_files_the_options_gave(trained_mt: Path) -> None:
    results = json.loads((trained_mt / "results.json").read_text())
    assert results["data"]["source"] == "mt-data0/train.en + mt-data0/train.ro"
    card = (trained_mt / "README.md").read_text()
    assert "split: dev.en + dev.ro" in card
    assert "on mt-data0/train.en + mt-data0/train.ro with nlptasks" in card  # not bible-en-fr


def test_predict_reads_text_lines_in_order(
    trained_mt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import BartForConditionalGeneration

    # Batches are sorted by length; the answers must come back in input order. A model that
    # echoes its input shows which answer belongs to which line.
    def echo(self: object, input_ids: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return input_ids

    monkeypatch.setattr(BartForConditionalGeneration, "generate", echo)
    sources = lines("newstest2016.en", 7, start=100)
    path = tmp_path / "in.txt"
    path.write_text("\ufeff" + "".join(f"{s}\n" for s in sources), encoding="utf-8")
    result = invoke(
        "predict",
        "translation",
        "--model",
        str(trained_mt / "model"),
        "-i",
        str(path),
        "--batch-size",
        "3",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["text"] for r in rows] == sources
    # Cut to options.max_source_length (128) tokens at most; the rest is each line's own text.
    assert all(s.startswith(r["translation"][:40]) for r, s in zip(rows, sources, strict=True))
    # A translation is printed whole, as JSON with its source, even to a terminal: the task
    # writes nothing while it translates.
    from nlptasks.runner import predict

    written: list[str] = []
    outputs = predict("translation", str(trained_mt / "model"), sources, 3, stream=written.append)
    assert [o["text"] for o in outputs] == sources and written == []
    assert all(s.startswith(o["translation"][:40]) for o, s in zip(outputs, sources, strict=True))
    write_lines(path, [sources[0], "", sources[1]])
    empty = invoke("predict", "translation", "--model", str(trained_mt / "model"), "-i", str(path))
    assert empty.exit_code == 1 and "line 2" in empty.output


def test_greedy_and_beam_predictions(trained_mt: Path) -> None:
    sources = lines("newstest2016.en", 3, start=200)
    greedy = invoke(
        "predict", "translation", "--model", str(trained_mt / "model"), *sources, "--greedy"
    )
    beams = invoke("predict", "translation", "--model", str(trained_mt / "model"), *sources)
    assert greedy.exit_code == 0 and beams.exit_code == 0, greedy.output + beams.output
    assert len(greedy.output.strip().splitlines()) == 3


def test_seeded_sampling_gives_the_same_text_whatever_the_batch(trained_mt: Path) -> None:
    """predict --seed: the same seed gives the same translations (in any batch), another
    seed others; generation.seed reaches generate() through the core's sampling_seed."""
    sources = lines("newstest2016.en", 4, start=300)

    def sample(seed: int, batch_size: int) -> list[str]:
        result = invoke(
            "predict",
            "translation",
            "--model",
            str(trained_mt / "model"),
            *sources,
            "--temperature",
            "5",  # a flat distribution: a barely trained model would mostly stop at once
            "--top-k",
            "0",
            "--num-beams",
            "1",
            "--seed",
            str(seed),
            "--batch-size",
            str(batch_size),
        )
        assert result.exit_code == 0, result.output
        return [json.loads(line)["translation"] for line in result.output.splitlines()]

    first = sample(1, 4)
    assert any(first)
    assert sample(1, 4) == first
    assert sample(1, 3) == first  # each text samples alone from the seed
    assert sample(2, 4) != first


@pytest.mark.slow
def test_two_process_generation_eval_equals_one_process(trained_mt: Path) -> None:
    command = ["eval", "translation", "--model", str(trained_mt / "model"), "--json"]
    command += ["train.eval_batch_size=5"]  # 24 pairs: uneven last round
    two = run_nlptasks(*command, processes=2)
    one = run_nlptasks(*command)
    two_metrics, one_metrics = json.loads(two.stdout), json.loads(one.stdout)
    assert set(one_metrics) == {"loss", "bleu", "chrf"}
    assert two_metrics == pytest.approx(one_metrics, rel=1e-6)


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["~options.source_lang"], "'options.source_lang' is not set"),
        (["options.max_source_length=1000"], "options.max_source_length is 1000, more than"),
        (["options.source_lang_code=en_XX"], "this model's tokenizer has no language codes"),
        (["options.chat_template=true"], "tokenizer has no chat template"),
    ],
)
def test_bad_settings_are_one_line(
    tiny_mt: Path, parallel: list[str], overrides: list[str], message: str
) -> None:
    result = invoke(
        "run",
        "translation",
        f"model={tiny_mt}",
        "options.target_lang=ro",
        "options.max_target_length=128",
        "train.max_steps=1",
        *parallel,
        *overrides,
    )
    assert result.exit_code != 0, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_misaligned_files_are_one_line(tiny_mt: Path, tmp_path: Path) -> None:
    result = invoke(
        "run",
        "translation",
        f"model={tiny_mt}",
        "options.target_lang=ro",
        f"options.source_path={write_lines(tmp_path / 'a.en', ['a', 'b', 'c'])}",
        f"options.target_path={write_lines(tmp_path / 'a.ro', ['a', 'b'])}",
    )
    assert result.exit_code == 1
    assert "has 3 lines" in result.output and "has 2" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_unknown_language_code_is_refused(tiny_mt: Path) -> None:
    """A multilingual (mBART-style) tokenizer: its language codes are special tokens."""
    from transformers import AutoTokenizer

    from nlptasks.builtins.translation.task import Seq2SeqTranslator, TranslationOptions

    tokenizer = AutoTokenizer.from_pretrained(tiny_mt)
    tokenizer.add_special_tokens({"additional_special_tokens": ["en_XX", "ro_RO"]})
    tokenizer.src_lang = "en_XX"  # what marks mBART / NLLB / M2M tokenizers
    tokenizer.tgt_lang = "ro_RO"
    options = TranslationOptions(source_lang="en", target_lang="ro", target_lang_code="ro_RO")
    with pytest.raises(DataError, match="'en' is not a language code this tokenizer knows") as e:
        Seq2SeqTranslator(tokenizer, options, None, "mbart")
    assert "It knows en_XX, ro_RO." in str(e.value)
    options.source_lang_code = "en_XX"
    translator = Seq2SeqTranslator(tokenizer, options, None, "mbart")
    assert tokenizer.src_lang == "en_XX"
    assert translator.forced_bos_token_id == tokenizer.convert_tokens_to_ids("ro_RO")


def test_a_prompted_model_refuses_an_input_longer_than_its_context(tmp_path: Path) -> None:
    texts = lines("train.europarl-v7.first10k.en", 300) + lines(
        "train.europarl-v7.first10k.ro", 300
    )
    model_dir = make_tiny_gpt2(tmp_path / "gpt2", texts, dropout=0)
    pairs = zip(lines("newstest2016.en", 200), lines("newstest2016.ro", 200), strict=True)
    short = [(e, r) for e, r in pairs if len(e.split()) + len(r.split()) < 16][:8]
    result = invoke(
        "run",
        "translation",
        f"model={model_dir}",
        "options.target_lang=ro",
        f"options.source_path={write_lines(tmp_path / 't.en', [e for e, _ in short])}",
        f"options.target_path={write_lines(tmp_path / 't.ro', [r for _, r in short])}",
        "data.eval_fraction=0.5",
        "train.max_steps=1",
        "train.mixed_precision=no",
        "generation.max_new_tokens=4",
        "--output-dir",
        str(tmp_path / "run"),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "decoder-only, prompted" in (tmp_path / "run" / "README.md").read_text()
    long_text = " ".join(lines("newstest2016.en", 4))
    refused = invoke(
        "predict", "translation", "--model", str(tmp_path / "run" / "model"), long_text
    )
    assert refused.exit_code == 1
    assert "leaving no room in the model's context (128)" in refused.output
    assert "Traceback" not in refused.output
    assert refused.output.strip().splitlines()[-1].startswith("Error: Input 1's prompt")
    fits = invoke(
        "predict",
        "translation",
        "--model",
        str(tmp_path / "run" / "model"),
        long_text,
        "--set",
        "options.max_source_length=60",
    )
    assert fits.exit_code == 0, fits.output


def test_t5_models_get_their_task_prefix(
    tiny_mt: Path, tmp_path: Path, parallel: list[str]
) -> None:
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tiny_mt)
    config = T5Config(  # type: ignore[call-arg]  # decoder_start_token_id: a PretrainedConfig kwarg
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    task, splits, recipe = _task_and_splits(
        tmp_path / "t5", ["options.source_lang=en", "options.target_lang=ro", *parallel]
    )
    _, tokenizer = task.build_model(str(tmp_path / "t5"), recipe)
    features = task.preprocess(splits["eval"], tokenizer, recipe)
    first = tokenizer.decode(features[0]["input_ids"], skip_special_tokens=True)
    assert first == "translate English to Romanian: " + splits["eval"][0]["source"]
    # A recipe's own prefix wins.
    _, splits, recipe = _task_and_splits(
        tmp_path / "t5",
        [
            "options.source_lang=en",
            "options.target_lang=ro",
            "options.source_prefix=ro:",
            *parallel,
        ],
    )
    task.build_model(str(tmp_path / "t5"), recipe)
    features = task.preprocess(splits["eval"], tokenizer, recipe)
    assert (
        tokenizer.decode(features[0]["input_ids"], skip_special_tokens=True)
        == "ro:" + splits["eval"][0]["source"]
    )
