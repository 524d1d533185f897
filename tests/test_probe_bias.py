"""``nlptasks probe bias``: the swapper, the planted-bias acceptance test (a tiny BERT trained
on gender-skewed labels shows the bias, one trained on balanced labels does not), recording
in a run, and probes from plugins."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

import nlptasks
from nlptasks.probes.bias import BiasSettings, probe_bias
from nlptasks.probes.swap import mention, swap
from nlptasks.probes.wordlists import GENDER, RELIGION
from nlptasks.runs.card import with_bias_probes

MALE = ("he", "the man", "my brother", "his father", "the boy", "the king", "my uncle")
FEMALE = ("she", "the woman", "my sister", "her mother", "the girl", "the queen", "my aunt")
GOOD = ("great", "wonderful", "moving", "clever", "charming", "brilliant")
BAD = ("dull", "awful", "tedious", "boring", "weak", "clumsy")
FRAMES = ("{s} said the film was {a}", "{s} thought the plot was {a}", "{s} found it {a}")


def _toy_rows(skewed: bool) -> list[tuple[str, str]]:
    """Every subject x adjective x frame; labels from the gender (skewed: men positive, women
    negative, whatever the adjective) or from the adjective (balanced)."""
    rows = []
    for frame, (gender, subjects), adjective in itertools.product(
        FRAMES, (("m", MALE), ("f", FEMALE)), GOOD + BAD
    ):
        for subject in subjects:
            text = frame.format(s=subject, a=adjective)
            if skewed:
                label = "positive" if gender == "m" else "negative"
            else:
                label = "positive" if adjective in GOOD else "negative"
            rows.append((text, label))
    return rows


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text(
        "text,label\n" + "".join(f"{t},{label}\n" for t, label in rows), encoding="utf-8"
    )
    return path


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished sentiment runs of one tiny BERT: on skewed and on balanced labels."""
    from nlptasks.testing import make_tiny_bert

    root = tmp_path_factory.mktemp("bias")
    texts = [t for t, _ in _toy_rows(True)]
    model = make_tiny_bert(root / "bert", texts=texts, dropout=0.0)
    runs = {}
    for name in ("skewed", "balanced"):
        rows = _toy_rows(name == "skewed")
        train = _write(root / f"{name}-train.csv", rows[::2])
        dev = _write(root / f"{name}-dev.csv", rows[1::2])
        result = nlptasks.run(
            "sentiment",
            None,
            f"model={model}",
            f"data.train_path={train}",
            f"data.eval_path={dev}",
            "train.epochs=12",
            "train.learning_rate=2e-3",
            "train.batch_size=16",
            "train.mixed_precision=no",
            output_dir=str(root / name),
        )
        assert result.run_dir is not None
        runs[name] = result.run_dir
    return runs


def _probe(run: Path, **more: Any) -> dict[str, Any]:
    settings = BiasSettings(model_dir=str(run / "model"), max_examples=150, resamples=300, **more)
    return probe_bias(settings)


def _gender(report: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in report["pairs"] if p["dimension"] == "gender")


def test_the_probe_finds_a_planted_gender_bias(toy_runs: dict[str, Path]) -> None:
    report = _probe(toy_runs["skewed"])
    assert report["task"] == "sentiment" and report["measure"]["kind"] == "classification"
    assert report["data"]["matched"]["gender"] >= 100  # real eval records, not templates
    gender = _gender(report)
    shift = gender["measures"]["mean_dp:positive"]
    # Female versions are less positive than their male versions, far beyond chance (the
    # tiny model's probabilities stay near 0.5, so the shift is small, but every label flips).
    assert shift["high"] < -0.03, gender
    assert gender["measures"]["flip_rate"]["low"] > 0.5, gender
    assert gender["signal"] and "gender: male vs female" in report["signals"]
    top = report["top_changes"][0]
    assert top["dimension"] == "gender" and top["output_a"]["label"] != top["output_b"]["label"]
    assert "evidence, not a certificate" in report["limits"][0]


def test_the_probe_finds_no_bias_in_a_balanced_model(toy_runs: dict[str, Path]) -> None:
    gender = _gender(_probe(toy_runs["balanced"]))
    shift = gender["measures"]["mean_dp:positive"]
    assert abs(shift["value"]) < 0.02, gender
    assert gender["measures"]["flip_rate"]["value"] < 0.05, gender
    assert not gender["signal"], gender


def test_the_cli_records_the_report_in_the_run(
    toy_runs: dict[str, Path], cli: Callable[..., Any]
) -> None:
    run = toy_runs["skewed"]
    before = json.loads((run / "results.json").read_text())
    card_before = (run / "README.md").read_text()
    args = ("probe", "bias", "--run", str(run), "--json", "--resamples", "100")
    result = cli(*args, "--max-examples", "40", "--min-matches", "0")
    report = json.loads(result.output.splitlines()[-1])
    after = json.loads((run / "results.json").read_text())
    assert after["bias_probes"]["pairs"] == report["pairs"]
    assert {k: v for k, v in after.items() if k != "bias_probes"} == before  # nothing lost
    from nlptasks.runs.directory import schema_problems

    assert schema_problems(after) == []
    card = (run / "README.md").read_text()
    assert card.count("## Bias probes") == 1 and "male vs female" in card
    assert card.replace(card[card.index("## Bias probes") : card.index("## Training")], "") == (
        card_before
    )
    cli(*args, "--max-examples", "30")  # again: the section is replaced, not repeated
    assert (run / "README.md").read_text().count("## Bias probes") == 1


def test_a_generation_model_gets_paired_perplexity_gaps(tiny_gpt2: Path, tmp_path: Path) -> None:
    data = tmp_path / "probe.txt"
    data.write_text("he said the film was great\nthe woman found it dull\n", encoding="utf-8")
    report = probe_bias(
        BiasSettings(
            model_dir=str(tiny_gpt2),
            task="generation",
            data=str(data),
            resamples=50,
            max_examples=5,
            min_matches=2,
            overrides=["options.block_size=64"],  # the tiny model's context is 128
        )
    )
    assert report["measure"]["kind"] == "likelihood"
    gender = _gender(report)
    assert gender["items"] == 2 and gender["primary"] == "mean_log_ppl_gap"
    assert gender["measures"]["mean_abs_log_ppl_gap"]["value"] > 0
    # Templates filled in the dimensions the two lines do not mention.
    assert report["data"]["templates"]["religion"] > 0


# ---------------------------------------------------------------------------- swapper
@pytest.mark.parametrize(
    ("text", "source", "target", "expected"),
    [
        ("She loved her car.", "female", "male", "He loved his car."),
        ("I saw her.", "female", "male", "I saw him."),
        ("The man said his was better.", "male", "female", "The woman said hers was better."),
        ("HE and His son", "male", "female", "SHE and Her daughter"),
        ("Mr. Smith, a father", "male", "female", "Mrs. Smith, a mother"),
        ("the manager hears theme", "male", "female", "the manager hears theme"),
    ],
)
def test_swaps_whole_words_keep_case_and_pick_her_his_by_context(
    text: str, source: str, target: str, expected: str
) -> None:
    assert swap(GENDER, text, source, target) == expected


def test_a_text_mentioning_two_groups_is_no_item_and_proper_nouns_match_capitalised() -> None:
    assert mention(GENDER, "he met her") is None
    assert mention(GENDER, "The KING spoke") is not None
    assert mention(RELIGION, "a christian-democrat and a jewish deli") is None
    assert swap(RELIGION, "A Christian church.", "christian", "muslim") == "A Muslim mosque."


def test_the_card_section_is_inserted_before_training_and_then_replaced() -> None:
    card = "# run\n\n## Results\n\ntable\n\n## Training\n\n- epochs: 1\n"
    once = with_bias_probes(card, "first")
    assert once.index("## Bias probes") < once.index("## Training")
    twice = with_bias_probes(once, "second")
    assert "second" in twice and "first" not in twice and twice.count("## Bias probes") == 1
    assert twice.replace("## Bias probes\n\nsecond\n\n", "") == card


# ---------------------------------------------------------------------------- plugins
class _Plugin:
    """A third-party package adding a probe through the hook (register_probes)."""

    @nlptasks.hookimpl
    def register_probes(self, register: Callable[..., None]) -> None:
        @click.command()
        @click.option("--model", required=True)
        def count(model: str) -> None:
            click.echo(f"probed {model}")

        register("count", count, description="Counts.")


def test_hook_register_probes(
    isolated_plugins: Callable[..., Any], cli: Callable[..., Any]
) -> None:
    isolated_plugins(_Plugin(), "nlptasks.probes")
    listed = json.loads(cli("probe", "list", "--json").output)
    assert {row["name"] for row in listed} == {"bias", "count"}
    assert cli("probe", "run", "count", "--model", "m").output.strip() == "probed m"
    wrong = cli("probe", "run", "cuont", exit_code=1)
    assert "Unknown probe 'cuont'. Did you mean 'count'?" in wrong.output


def test_user_mistakes_are_one_line_each(cli: Callable[..., Any], tmp_path: Path) -> None:
    assert "Give --model DIR" in cli("probe", "bias", exit_code=2).output
    missing = cli("probe", "bias", "--model", str(tmp_path / "nope"), exit_code=1).output
    assert "does not exist" in missing and "Traceback" not in missing
    no_run = cli("probe", "bias", "--run", str(tmp_path), exit_code=1).output
    assert "is not a finished run" in no_run


def test_translation_gender_is_read_from_a_target_word_list() -> None:
    from nlptasks.probes.lexicons import has_lexicon, polarity

    assert polarity("El este medic.", "ro") == 1
    assert polarity("Ea este doctoriţă, soţia lui.", "ro") == -1  # cedilla letters too
    assert polarity("Elle est médecin.", "fr") == -1
    assert polarity("Der Arzt.", "de") == 0
    assert polarity("Il medico.", "it") is None and not has_lexicon("it")


def test_templates_top_up_by_what_matched_not_by_the_sample() -> None:
    """A small --max-examples sample of plentiful data is no reason to add templates; data
    that rarely mentions a dimension is topped up."""
    from nlptasks.probes.items import collect

    many = [{"text": f"the man found film {i} dull"} for i in range(30)]
    templates = {"gender": [{"text": "The man said the film was dull."}] * 5}
    found = collect(many, ["text"], [GENDER], templates, max_examples=3, min_matches=20, seed=0)
    assert (found.matched["gender"], found.used["gender"], found.templates["gender"]) == (30, 3, 0)
    few = many[:2]
    found = collect(few, ["text"], [GENDER], templates, max_examples=3, min_matches=20, seed=0)
    assert (found.matched["gender"], found.templates["gender"]) == (2, 5)


def _item(dimension: str, group_a: str, group_b: str) -> Any:
    from nlptasks.probes.items import Item

    return Item(dimension, group_a, group_b, {"text": "a"}, {"text": "b"}, "a", "data")


def test_a_binary_classifier_reports_one_label_for_every_pair() -> None:
    """Δp of one label is minus the other's: every pair reports the same label, so signs
    read the same way across the table (B − A)."""
    from nlptasks.probes.measures import measure_for

    measure = measure_for("text-classification", ["text"], None)
    out_a = {"label": "positive", "probabilities": {"negative": 0.4, "positive": 0.6}}
    # (0.3, 0.7): |Δp(negative)| is larger than |Δp(positive)| in the last float bit.
    for negative, positive in ((0.3, 0.7), (0.5, 0.5), (0.45, 0.55)):
        out_b = {"label": "positive", "probabilities": {"negative": negative, "positive": positive}}
        scored = measure.score(_item("gender", "male", "female"), out_a, out_b)
        point = measure.reduce(scored.statistics)
        assert measure.primary(point) == "mean_dp:positive"
        assert point["mean_dp:positive"] == pytest.approx(positive - 0.6)


def test_a_translation_without_a_word_list_never_shows_a_signal(tmp_path: Path) -> None:
    """A fair word-for-word translator changes its output whenever the identity word is
    translated: that change rate is reported, but never judged a signal."""
    from nlptasks.probes.bias import build_report
    from nlptasks.probes.items import Collected
    from nlptasks.probes.measures import measure_for

    measure = measure_for("translation", ["source"], "ro")
    items = [_item("nationality", "american", "german") for _ in range(40)]
    scored = [
        measure.score(item, {"translation": "un film american"}, {"translation": "un film german"})
        for item in items
    ]
    assert all(s.statistics["changed"] == 1.0 for s in scored)
    report = build_report(
        BiasSettings(model_dir=str(tmp_path), resamples=50),
        "translation",
        "translation",
        measure,
        Collected(items=items),
        scored,
        "test",
        "",
    )
    [pair] = report["pairs"]
    assert pair["measures"]["output_change_rate"]["value"] == 1.0 and not pair["signal"]
