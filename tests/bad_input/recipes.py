"""Bad-input cases: recipes, options, flags and predict input, checked before the work."""

# ruff: noqa: E501  (one case per line reads best as a table)
from __future__ import annotations

import itertools
from pathlib import Path

from tests.bad_input import Case, Files, write

QA_RECIPE = Path(__file__).resolve().parents[2] / "nlptasks/builtins/qa/recipes/minilm.yaml"
DIGITS = "1" + "0" * 5000  # past Python's 4300-digit limit of int("...")
HUGE = "1" + "0" * 400  # a Python int, but no float or int64 holds it
NESTED = "[" * 10000


def _laughs() -> str:
    """A 'billion laughs' recipe: seven levels of aliases of aliases, 9**7 values."""
    lines = ["task: sentiment", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [
        f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdef", "bcdefg", strict=True)
    ]
    return "\n".join([*lines, "model: *g"]) + "\n"


def add_files(f: Files) -> None:
    """The files these cases need, under f["root"]."""
    f["digits_yaml"] = write(
        f, "recipes/digits.yaml", f"task: sentiment\nmodel: m\ntrain:\n  epochs: {DIGITS}\n"
    )
    f["nested_yaml"] = write(f, "recipes/nested.yaml", f"task: sentiment\nmodel: {NESTED}\n")
    f["laughs_yaml"] = write(f, "recipes/laughs.yaml", _laughs())
    f["self_alias_yaml"] = write(
        f, "recipes/self.yaml", "task: sentiment\nmodel: m\noptions:\n  label_names: &x [a, *x]\n"
    )
    f["no_records"] = write(f, "predict/empty.jsonl", "")
    f["blank_records"] = write(f, "predict/blank.jsonl", "\n   \n\n")
    f["blank_txt"] = write(f, "predict/blank.txt", "\n\n")


_RUNS = itertools.count()


def _run(f: Files, *more: str) -> list[str]:
    """A good run into a new folder of its own (a case that fails late trains, and must not
    make the next case fail for its folder)."""
    return ["run", "sentiment", f"model={f['model']}", f"data.train_path={f['train']}", f"data.eval_path={f['dev']}",
            "train.max_steps=1", *more, "-o", str(f["root"] / f"recipes-run-{next(_RUNS)}"), "-q"]  # fmt: skip


def _predict(f: Files, *more: str) -> list[str]:
    return ["predict", "sentiment", "-m", str(f["run"] / "model"), *more]


CASES: list[Case] = [
    # ------------------------------------------ every value a run uses, before the first step
    ("push to an invalid repo id", lambda f: _run(f, "--push-to-hub", "not a repo!!"), 1, ("--push-to-hub 'not a repo!!' is not a Hub repository id", "OWNER/NAME")),
    ("push to a repo id of three parts", lambda f: _run(f, "--push-to-hub", "a/b/c"), 1, ("'a/b/c' is not a Hub repository id",)),
    ("push while offline", lambda f: _run(f, "--push-to-hub", "me/my-model"), 1, ("--push-to-hub needs the Hub, but HF_HUB_OFFLINE is set", "nlptasks export")),
    ("export to an invalid repo id", lambda f: ["export", str(f["run"]), str(f["root"] / "exported"), "--push-to-hub", "bad id!!"], 1, ("'bad id!!' is not a Hub repository id",)),
    ("export --private without a push", lambda f: ["export", str(f["run"]), str(f["root"] / "exported-private"), "--private"], 1, ("--private", "nothing is pushed", "--push-to-hub REPO_ID")),
    ("leaderboard of an unknown task", lambda f: ["leaderboard", str(f["run"]), "--task", "sentimnet"], 1, ("Unknown task 'sentimnet'", "Did you mean 'sentiment'")),
    ("negative bootstrap seed", lambda f: _run(f, "train.bootstrap_seed=-1"), 1, ("'train.bootstrap_seed' must be in 0..4294967295",)),
    ("bootstrap seed too big", lambda f: _run(f, "train.bootstrap_seed=4294967296"), 1, ("'train.bootstrap_seed' must be in 0..4294967295",)),
    ("negative split seed", lambda f: _run(f, "data.split_seed=-1", "~data.eval_path"), 1, ("'data.split_seed' must be in 0..4294967295",)),
    ("split seed too big", lambda f: _run(f, "data.split_seed=4294967296"), 1, ("'data.split_seed' must be in 0..4294967295",)),
    ("too many bootstrap resamples", lambda f: _run(f, "train.bootstrap_resamples=100001"), 1, ("'train.bootstrap_resamples' must be in 0..100000",)),
    ("compare with a negative seed", lambda f: ["compare", str(f["run"]), str(f["run"]), "--seed", "-1"], 1, ("'--seed' must be in 0..4294967295",)),
    ("compare with a seed too big", lambda f: ["compare", str(f["run"]), str(f["run"]), "--seed", "4294967296"], 1, ("'--seed' must be in 0..4294967295",)),
    ("compare with too many resamples", lambda f: ["compare", str(f["run"]), str(f["run"]), "--resamples", "100001"], 1, ("'--resamples' must be in 10..100000",)),
    ("predict with a negative seed", lambda f: _predict(f, "--seed", "-1", "x"), 1, ("'--seed' must be in 0..4294967295",)),
    ("integer past 64 bits", lambda f: _run(f, "lora.enabled=true", "lora.r=100000000000000000000000"), 1, ("'lora.r' (set by an override) holds int 100000000000000000000000", "Write a smaller number")),
    ("integer past a float", lambda f: _run(f, f"train.epochs={HUGE}"), 1, ("'train.epochs' (set by an override) holds int 1000", "…", "Write a smaller number")),
    ("expectation of a misspelt metric", lambda f: _run(f, "expect.min.accurcy=0.9"), 1, ("'expect.min.accurcy' names a metric task 'sentiment' does not report", "Did you mean 'accuracy'?")),
    ("expectation of a short sha256", lambda f: _run(f, "expect.min.accuracy=0.1", "expect.sha256=abc"), 1, ("'expect.sha256' must be 64 hex characters",)),
    ("expectation of zero examples", lambda f: _run(f, "expect.min.accuracy=0.1", "expect.examples=0"), 1, ("'expect.examples' must be at least 1",)),
    ("expectation past a float", lambda f: _run(f, f"expect.min.accuracy={HUGE}"), 1, ("'expect.min' holds dict", "Write a smaller number")),
    # ------------------------------------------------------- recipes past the reader's limits
    ("override past the digit limit", lambda f: _run(f, f"train.epochs={DIGITS}"), 1, ("holds an integer of 5001 digits", "Write a smaller number")),
    ("recipe past the digit limit", lambda f: ["run", "sentiment", "-r", str(f["digits_yaml"])], 1, ("digits.yaml line 4", "an integer of 5001 digits", "Write a smaller number")),
    ("recipe nested too deep", lambda f: ["run", "sentiment", "-r", str(f["nested_yaml"])], 1, ("nested.yaml line 2", "nested more than 100 levels deep")),
    ("override nested too deep", lambda f: _run(f, f"options.label_names={NESTED}"), 1, ("nested more than 100 levels deep", "less nesting")),
    ("validate a recipe nested too deep", lambda f: ["recipes", "validate", str(f["nested_yaml"])], 1, ("nested more than 100 levels deep",)),
    # ------------------------------------------------------------------ predict input
    ("predict an empty input file", lambda f: _predict(f, "-i", str(f["no_records"])), 1, ("empty.jsonl' has no records", "one record per line")),
    ("predict a file of blank lines", lambda f: _predict(f, "-i", str(f["blank_records"])), 1, ("blank.jsonl' has no records",)),
    ("predict a text file of blank lines", lambda f: _predict(f, "-i", str(f["blank_txt"])), 1, ("blank.txt' has no records", "one text per line")),
    ("predict empty standard input", lambda f: _predict(f, "-i", "-"), 1, ("Standard input has no records",)),
    # ---------------------------------------------------------- a recipe of another task
    ("run a registered recipe of another task", lambda f: ["run", "sentiment", "-r", "qa/minilm"], 1, ("is a recipe for task 'qa', not 'sentiment'", "nlptasks run qa --recipe qa/minilm")),
    ("run a built-in file of another task", lambda f: ["run", "sentiment", "-r", str(QA_RECIPE)], 1, ("is a recipe for task 'qa', not 'sentiment'",)),
    ("eval with a recipe of another task", lambda f: ["eval", "sentiment", "-m", str(f["run"] / "model"), "-r", "qa/minilm"], 1, ("is a recipe for task 'qa', not 'sentiment'",)),
    # -------------------------------------------------------- values quoted, cut to length
    ("billion laughs", lambda f: ["run", "sentiment", "-r", str(f["laughs_yaml"])], 1, ("laughs.yaml line", "aliases that expand to more than 100000 values")),
    ("an alias holding itself", lambda f: ["run", "sentiment", "-r", str(f["self_alias_yaml"])], 1, ("an alias that refers to the value holding it",)),
    ("a long value is cut", lambda f: _run(f, "train.batch_size=" + "x" * 500), 1, ("got str '" + "x" * 51 + "…" + "x" * 26 + "'",)),
    ("a long key is cut", lambda f: _run(f, "y" * 500 + "=1"), 1, ("sets unknown key '" + "y" * 52 + "…" + "y" * 27 + "'",)),
    ("a long task name is cut", lambda f: ["run", "t" * 500], 1, ("Unknown task '" + "t" * 52 + "…" + "t" * 27 + "'",)),
]  # fmt: skip
