"""Dataset resolution: local file types, held-out splits, caps, label names, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlptasks.data import load_file, load_splits
from nlptasks.errors import DataError
from nlptasks.recipes import DataConfig, load_recipe
from nlptasks.runner import load_task
from tests.conftest import SST2

ROWS = [("a fine film", "pos"), ("a dull film", "neg"), ("superb", "pos"), ("awful", "neg")]


def _write(path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        path.write_text("text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in ROWS))
    elif suffix == ".tsv":
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in ROWS))
    elif suffix == ".json":
        path.write_text(json.dumps([{"text": t, "label": lab} for t, lab in ROWS]))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in ROWS))
    elif suffix == ".parquet":
        import datasets

        datasets.Dataset.from_dict(
            {"text": [t for t, _ in ROWS], "label": [lab for _, lab in ROWS]}
        ).to_parquet(str(path))
    elif suffix == ".txt":
        path.write_text("".join(f"{t}\n" for t, _ in ROWS))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_local_file_types(tmp_path: Path, suffix: str) -> None:
    dataset = load_file(str(_write(tmp_path / f"data{suffix}")))
    assert dataset["text"] == [t for t, _ in ROWS]
    assert dataset["label"] == [lab for _, lab in ROWS]


def test_txt_files_have_a_text_column(tmp_path: Path) -> None:
    dataset = load_file(str(_write(tmp_path / "data.txt")))
    assert dataset.column_names == ["text"] and len(dataset) == 4


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match="unsupported type '.xlsx'"):
        load_file(str(path))


def test_sst2_tsv_keeps_quotes_and_counts() -> None:
    train = load_file(str(SST2 / "train.tsv"))
    dev = load_file(str(SST2 / "dev.tsv"))
    assert len(train) == 67349 and len(dev) == 872
    assert sum(dev["label"]) == 444
    assert train.column_names == ["sentence", "label"]


def test_held_out_split_is_fixed_and_disjoint() -> None:
    config = DataConfig(train_path=str(SST2 / "dev.tsv"), eval_fraction=0.25, split_seed=7)
    first, second = load_splits(config), load_splits(config)
    assert first["eval"]["sentence"] == second["eval"]["sentence"]
    assert len(first["eval"]) == 218 and len(first["train"]) == 654
    assert not set(first["eval"]["sentence"]) & set(first["train"]["sentence"])
    other = load_splits(
        DataConfig(train_path=str(SST2 / "dev.tsv"), eval_fraction=0.25, split_seed=8)
    )
    assert other["eval"]["sentence"] != first["eval"]["sentence"]


def test_caps_take_the_first_examples() -> None:
    config = DataConfig(
        train_path=str(SST2 / "train.tsv"),
        eval_path=str(SST2 / "dev.tsv"),
        max_train_examples=100,
        max_eval_examples=50,
    )
    splits = load_splits(config)
    assert len(splits["train"]) == 100 and len(splits["eval"]) == 50
    assert splits["train"][0]["sentence"].startswith("hide new secretions")


def test_eval_only_loads_no_train_file(tmp_path: Path) -> None:
    config = DataConfig(train_path=str(tmp_path / "missing.tsv"), eval_path=str(SST2 / "dev.tsv"))
    splits = load_splits(config, need_train=False)
    assert list(splits) == ["eval"] and len(splits["eval"]) == 872


def test_no_data_configured() -> None:
    with pytest.raises(DataError, match="names no data"):
        load_splits(DataConfig())


def test_text_column_is_detected_and_labels_named(tmp_path: Path) -> None:
    recipe = load_recipe(
        "sentiment",
        "minilm",
        [
            f"data.train_path={SST2 / 'dev.tsv'}",
            "data.max_train_examples=100",
        ],
    )
    task = load_task("sentiment")
    splits = task.prepare_data(load_splits(recipe.data), recipe)
    assert task.label_names == ["negative", "positive"]  # options.label_names of the recipe
    assert splits["train"].column_names == ["text", "labels"]
    plain = load_recipe(
        "sentiment",
        "minilm",
        [
            f"data.train_path={SST2 / 'dev.tsv'}",
            "~options.label_names",
        ],
    )
    task.prepare_data(load_splits(plain.data), plain)
    assert task.label_names == ["0", "1"]  # integer labels without names


def test_string_labels_come_from_the_data(tmp_path: Path) -> None:
    recipe = load_recipe(
        "sentiment",
        "minilm",
        [
            f"data.train_path={_write(tmp_path / 'd.csv')}",
            "~options.label_names",
            "data.eval_fraction=0.5",
        ],
    )
    task = load_task("sentiment")
    task.prepare_data(load_splits(recipe.data), recipe)
    assert task.label_names == ["neg", "pos"]


def test_label_outside_label_names(tmp_path: Path) -> None:
    recipe = load_recipe(
        "sentiment",
        "minilm",
        [
            f"data.train_path={_write(tmp_path / 'd.csv')}",
            "options.label_names=[bad, good]",
        ],
    )
    with pytest.raises(DataError, match="label '(neg|pos)'.*options.label_names"):
        load_task("sentiment").prepare_data(load_splits(recipe.data), recipe)


def test_tokenisation_is_cached_between_runs(tiny_bert: Path) -> None:
    def features() -> tuple[list[str], float]:
        recipe = load_recipe(
            "sentiment",
            "minilm",
            [
                f"model={tiny_bert}",
                f"data.train_path={SST2 / 'train.tsv'}",
                f"data.eval_path={SST2 / 'dev.tsv'}",
                "data.max_train_examples=3000",
            ],
        )
        task = load_task("sentiment")
        splits = task.prepare_data(load_splits(recipe.data), recipe)
        _, tokenizer = task.build_model(str(tiny_bert), recipe)
        done = task.preprocess(splits["train"], tokenizer, recipe)
        return [f["filename"] for f in done.cache_files], done["length"][:5]

    files_first, lengths_first = features()
    assert files_first and all(Path(f).is_file() for f in files_first)
    mtimes = [Path(f).stat().st_mtime_ns for f in files_first]
    files_second, lengths_second = features()
    assert files_second == files_first  # the same cache file, found by fingerprint
    assert [Path(f).stat().st_mtime_ns for f in files_second] == mtimes  # and not rewritten
    assert lengths_second == lengths_first


def test_rotten_tomatoes_snippets() -> None:
    from nlptasks.builtins.sentiment.datasets import load_rotten_tomatoes_snippets

    loaded = load_rotten_tomatoes_snippets()
    train = loaded["train"]
    assert len(train) == 12752
    assert sorted(set(train["label"])) == ["negative", "positive"]
    assert train["label"].count("positive") == 7368
    assert len(set(train["text"])) == 12752
    # the default recipe's fixed held-out split
    recipe = load_recipe("sentiment")
    splits = load_splits(recipe.data)
    assert len(splits["eval"]) == 1276 and len(splits["train"]) == 11476


def test_eval_file_wins_over_a_named_dataset(tmp_path: Path) -> None:
    recipe = load_recipe("sentiment", "minilm", [f"data.eval_path={SST2 / 'dev.tsv'}"])
    splits = load_splits(recipe.data)
    assert len(splits["eval"]) == 872  # not the held-out Rotten Tomatoes split
    assert len(splits["train"]) == 12752  # nothing held out of train when eval is given


# ------------------------------------------------------------------ small, odd and long data
BIG = "word " * 1_000_000  # one text of 5 MB


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".txt"])
def test_a_line_of_five_megabytes_is_read_whole(tmp_path: Path, suffix: str) -> None:
    rows = [(f"short {i}", i % 2) for i in range(30)]
    rows[17] = (BIG, 1)
    path = tmp_path / f"big{suffix}"
    if suffix == ".csv":
        path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    elif suffix == ".tsv":
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows))
    elif suffix == ".json":
        path.write_text(json.dumps([{"text": t, "label": lab} for t, lab in rows]))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    else:
        path.write_text("".join(f"{t}\n" for t, _ in rows))
    dataset = load_file(str(path))
    assert len(dataset) == 30
    assert dataset["text"][17].rstrip("\n") == BIG


def test_packing_a_long_row_takes_linear_time() -> None:
    """A 5 MB line is 2 million tokens; cutting it into blocks of 32 took 40 s when every
    block was deleted from the front of the row."""
    import time

    from nlptasks.builtins.generation.data import pack

    tokens = list(range(2_000_000))
    started = time.perf_counter()
    blocks = list(pack(iter([tokens[:5], tokens[5:]]), 32))
    assert time.perf_counter() - started < 5
    assert len(blocks) == 62_500 and all(len(b) == 32 for b in blocks)
    assert blocks[0] == tokens[:32] and blocks[-1] == tokens[-32:]
    assert list(pack(iter([[1, 2, 3], [4, 5], [6]]), 4)) == [[1, 2, 3, 4], [5, 6]]


def test_a_quoted_field_of_several_lines_is_read_and_said(tmp_path: Path) -> None:
    """A real multi-line field (its other lines are no rows) is kept, with a warning that says
    why the row count is below the line count."""
    rows = [f"sentence {i},{i % 2}" for i in range(40)]
    rows[5] = '"first paragraph\nsecond paragraph",1'
    path = tmp_path / "multiline.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"lines 7-8\), so its 41 lines are 40 rows"):
        dataset = load_file(str(path))
    assert len(dataset) == 40 and dataset["text"][5] == "first paragraph\nsecond paragraph"


def test_a_tsv_with_stray_quotes_is_read_whole(tmp_path: Path) -> None:
    """TSV files are read without quoting (as GLUE's): a quote never joins rows there."""
    rows = [f"sentence {i}\t{i % 2}" for i in range(40)]
    rows[5] = '"Great fun, for all\t1'
    rows[9] = 'a "classic" film\t0'
    path = tmp_path / "quotes.tsv"
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    dataset = load_file(str(path))
    assert len(dataset) == 40 and dataset["text"][5] == '"Great fun, for all'


@pytest.mark.parametrize(
    ("rows", "fraction", "sizes"), [(2, 0.1, (1, 1)), (3, 0.1, (2, 1)), (3, 0.5, (1, 2))]
)
def test_tiny_files_hold_out_what_they_can(
    tmp_path: Path, rows: int, fraction: float, sizes: tuple[int, int]
) -> None:
    path = _write(tmp_path / "d.csv")
    path.write_text("\n".join(path.read_text().splitlines()[: rows + 1]) + "\n")
    splits = load_splits(DataConfig(train_path=str(path), eval_fraction=fraction))
    assert (len(splits["train"]), len(splits["eval"])) == sizes


def test_one_row_trains_with_an_eval_file(tmp_path: Path) -> None:
    path = tmp_path / "one.tsv"
    path.write_text("sentence\tlabel\na fine film\t1\n")
    splits = load_splits(DataConfig(train_path=str(path), eval_path=str(SST2 / "dev.tsv")))
    assert len(splits["train"]) == 1 and len(splits["eval"]) == 872
    with pytest.raises(DataError, match="has 1 row: too few to hold out"):
        load_splits(DataConfig(train_path=str(path)))


def test_utf8_is_checked_across_chunks(tmp_path: Path) -> None:
    """The check reads 4 MB at a time: a character split between two reads is UTF-8, and a
    bad byte after the first read is placed by its offset in the file."""
    from nlptasks.data import _check_utf8

    path = tmp_path / "d.txt"
    head = b"a\n" * ((1 << 21) - 1) + b"x"  # 4 MB less one byte: "é" straddles the edge
    path.write_bytes(head + "é\n".encode() + b"ok\n")
    _check_utf8(path, "d.txt")
    path.write_bytes(head + "é\n".encode() + b"caf\xe9\n")
    offset = len(head) + 3 + 3
    with pytest.raises(DataError, match=rf"line {(1 << 21) + 1}, byte offset {offset}: 0xe9"):
        _check_utf8(path, "d.txt")


def test_translations_without_a_language_are_empty_pairs(tmp_path: Path) -> None:
    """Rows of a translation file that lack one language are empty pairs: skipped and counted
    (options.empty_pairs=skip); a file that lacks it in every row is another pair."""
    import datasets

    from nlptasks.builtins.translation.data import drop_empty, to_pairs

    rows = [{"en": f"e{i}", "fr": f"f{i}"} for i in range(5)]
    rows[2] = {"en": "e2", "de": "d2"}
    split = datasets.Dataset.from_list([{"translation": r} for r in rows])
    pairs = to_pairs(split, "en", "fr", (None, None), "train")
    with pytest.warns(UserWarning, match="Skipped 1 of 5 train pairs"):
        assert drop_empty(pairs, "skip", "train")["target"] == ["f0", "f1", "f3", "f4"]
    with pytest.raises(DataError, match="have no 'ro' text \\(they have de, en, fr\\)"):
        to_pairs(split, "en", "ro", (None, None), "train")


def test_prompt_templates() -> None:
    from nlptasks.builtins.translation.languages import prompt_problems

    for good in ("Translate from {source} to {target}:\n{text}", "{{braces}} {text!r}"):
        assert prompt_problems(good) == []
    assert "did you mean {target}?" in prompt_problems("{text} in {targte}")[0]
    assert "not a valid template" in prompt_problems("{text")[0]


def test_a_quoted_paragraph_whose_lines_look_like_rows_is_read(tmp_path: Path) -> None:
    """A well-formed quoted field of several lines is kept even when a middle line has as many
    commas as the header (its closing quote ends the field: nothing was swallowed)."""
    rows = ['"Para one.\nIt was long, and dull.\nThe end.",1'] + [f"film {i},1" for i in range(40)]
    path = tmp_path / "p.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"lines 2-4\)"):
        dataset = load_file(str(path))
    assert len(dataset) == 41 and dataset["text"][0].startswith("Para one.\nIt was long")


def test_line_numbers_of_joined_rows_follow_csv_lines(tmp_path: Path) -> None:
    """A form feed or a line separator inside a row is no line break for csv: the lines
    checked and named are the file's (str.splitlines would count more)."""
    rows = [f"film\x0c {i}\u2028x,1" for i in range(40)]
    rows[21] = '"first\nsecond\nthird\nfourth",1'
    path = tmp_path / "ff.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"lines 23-26\)"):
        dataset = load_file(str(path))
    assert len(dataset) == 40 and dataset["text"][21] == "first\nsecond\nthird\nfourth"


@pytest.mark.parametrize(
    ("first", "header"),
    [("English\tRomanian", True), ("en_XX\tro_RO", True), ("Romanian\tEnglish", True)],
)
def test_a_tsv_header_may_name_the_pair_by_name_or_locale_code(
    tmp_path: Path, first: str, header: bool
) -> None:
    from nlptasks.builtins.translation.data import read_tsv

    path = tmp_path / "en-ro.tsv"
    path.write_text(first + "\n" + "".join(f"a film {i}\tun film {i}\n" for i in range(5)))
    rows = read_tsv(str(path), "data.train_path", ("en", "source"), ("ro", "target"))
    assert len(rows) == 5
    swapped = first.startswith("Romanian")
    assert rows["source"][0] == ("un film 0" if swapped else "a film 0")


def test_a_first_row_that_is_no_header_is_a_pair(tmp_path: Path) -> None:
    """Short words are language codes too ("it" / "es"): such a first row is data."""
    from nlptasks.builtins.translation.data import read_tsv

    path = tmp_path / "en-es.tsv"
    path.write_text("it\tes\n" + "".join(f"a film {i}\tuna película {i}\n" for i in range(5)))
    rows = read_tsv(str(path), "data.train_path", ("en", "source"), ("es", "target"))
    assert len(rows) == 6 and rows["source"][0] == "it" and rows["target"][0] == "es"
