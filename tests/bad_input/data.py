# ruff: noqa: E501  (one case per line reads best as a table)
"""Bad-input cases: small, odd and unparsable data files, for all four tasks.

A file too small to hold out an eval split, label columns of lists or objects, a
translation file of another language pair, a prompt with a placeholder it cannot fill, a csv
whose stray quote joins rows (40 lines read as 39 rows), and files that cannot be parsed: each
is one line naming the file, the line (or byte) where it can, the cause and the fix.
"""

from __future__ import annotations

import json

from nlptasks.testing import make_tiny_gpt2
from nlptasks.testing.tiny_datasets import tiny_dataset
from tests.bad_input import Case, Files, write


def add_files(f: Files) -> None:
    """The files these cases need, under f["root"]."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = f["root"] / "data"
    if "gpt2" not in f:  # the models' cases make one; these need any causal LM
        f["gpt2"] = make_tiny_gpt2(root / "gpt2")
    for task in ("qa", "generation", "translation"):
        tiny_dataset(task, root / task)
    f["qa_eval"] = root / "qa" / "eval.jsonl"
    f["gen_eval"] = root / "generation" / "eval.txt"
    f["tr_train"] = root / "translation" / "train.jsonl"
    f["tr_eval"] = root / "translation" / "eval.jsonl"
    qa_rows = [json.loads(line) for line in (root / "qa" / "train.jsonl").read_text().splitlines()]

    def jsonl(rows: list[object]) -> str:
        return "".join(json.dumps(row) + "\n" for row in rows)

    sentences = [f"a film with {n} fine scenes" for n in range(40)]
    # ----------------------------------------------------------------- small and odd data
    f["one_row"] = write(f, "data/one-row.tsv", "sentence\tlabel\na fine film\t1\n")
    f["three_rows"] = write(
        f, "data/three-rows.tsv", "sentence\tlabel\na fine film\t1\na dull film\t0\nsuperb\t1\n"
    )
    f["qa_one"] = write(f, "data/qa-one.jsonl", jsonl(qa_rows[:1]))
    f["gen_one"] = write(f, "data/one-line.txt", "The cat lives in the barn .\n")
    f["gen_one_record"] = write(
        f, "data/one-record.jsonl", jsonl([{"prompt": "The cat", "completion": " lives"}])
    )
    f["tr_one"] = write(
        f, "data/one-pair.jsonl", jsonl([{"translation": {"en": "the cat", "fr": "le chat"}}])
    )
    f["label_lists"] = write(
        f,
        "data/label-lists.jsonl",
        jsonl([{"text": s, "label": [n % 2]} for n, s in enumerate(sentences)]),
    )
    f["label_objects"] = write(
        f,
        "data/label-objects.jsonl",
        jsonl([{"text": s, "label": {"a": n % 2}} for n, s in enumerate(sentences)]),
    )
    f["label_json"] = write(
        f,
        "data/label-json.jsonl",
        jsonl(
            [
                {"text": s, "label": n % 2 if n < 30 else {"stars": 5}}
                for n, s in enumerate(sentences)
            ]
        ),
    )
    f["label_kinds"] = write(
        f,
        "data/label-kinds.jsonl",
        jsonl(
            [{"text": s, "label": n % 2 if n < 30 else "positive"} for n, s in enumerate(sentences)]
        ),
    )
    f["completion_objects"] = write(
        f,
        "data/completion-objects.jsonl",
        jsonl([{"prompt": s, "completion": {"text": "ok"}} for s in sentences]),
    )
    f["tr_other_pair"] = write(
        f,
        "data/en-de.tsv",
        "en\tde\n" + "".join(f"{s}\tein Film {n}\n" for n, s in enumerate(sentences)),
    )
    f["tr_some_without"] = write(
        f,
        "data/some-without-fr.jsonl",
        jsonl(
            [
                {
                    "translation": {"en": s, "fr": "un film"}
                    if n != 5
                    else {"en": s, "de": "ein Film"}
                }
                for n, s in enumerate(sentences)
            ]
        ),
    )
    f["tr_strings"] = write(
        f,
        "data/translation-strings.jsonl",
        jsonl(
            [
                {"translation": {"en": s, "fr": "un film"} if n != 3 else s}
                for n, s in enumerate(sentences)
            ]
        ),
    )
    # A csv of 40 rows whose row 6 starts with a quote that closes on the next line: pandas
    # reads 39 rows without a word (the second line joins the first's text, its label empty).
    swallowed = [f"{s},{n % 2}" for n, s in enumerate(sentences)]
    swallowed[5:7] = ['"Great fun, for all,1', 'the "best', 'film" ever,0']
    f["joined_rows"] = write(
        f, "data/joined.csv", "text,label\n" + "\n".join(swallowed[:40]) + "\n"
    )
    swallowing = [f"{s},{n % 2}" for n, s in enumerate(sentences)]
    swallowing[5], swallowing[9] = '"Great fun, for all,1', 'a "classic" film,0'
    f["swallowed_rows"] = write(
        f, "data/swallowed.csv", "text,label\n" + "\n".join(swallowing) + "\n"
    )
    f["no_header"] = write(
        f, "data/no-header.tsv", "".join(f"{s}\t{n % 2}\n" for n, s in enumerate(sentences))
    )
    # ------------------------------------------------------------------ unparsable files
    f["unclosed_quote"] = write(
        f,
        "data/unclosed.csv",
        "text,label\n"
        + "".join(f"{s},{n % 2}\n" if n != 6 else f'"{s},1\n' for n, s in enumerate(sentences)),
    )
    f["ragged_csv"] = write(
        f,
        "data/ragged.csv",
        "text,label\n"
        + "".join(
            f"{s},{n % 2}\n" if n != 8 else f"{s}, and more,{n % 2}\n"
            for n, s in enumerate(sentences)
        ),
    )
    f["ragged_tsv"] = write(
        f,
        "data/ragged.tsv",
        "sentence\tlabel\n"
        + "".join(
            f"{s}\t{n % 2}\n" if n != 8 else f"{s}\tmore\t1\n" for n, s in enumerate(sentences)
        ),
    )
    latin1 = [f"{s},{n % 2}\n" for n, s in enumerate(sentences)]
    latin1[30] = "caf\xe9 cr\xe8me,1\n"
    f["latin1_csv_late"] = write(
        f, "data/latin1-late.csv", ("text,label\n" + "".join(latin1)).encode("latin-1")
    )
    f["latin1_jsonl_sent"] = write(
        f,
        "data/latin1-sentiment.jsonl",
        (
            jsonl([{"text": s, "label": 1} for s in sentences[:4]])
            + '{"text": "caf\xe9", "label": 0}\n'
        ).encode("latin-1"),
    )
    f["qa_latin1"] = write(
        f,
        "data/qa-latin1.jsonl",
        (
            jsonl(qa_rows[:2])
            + json.dumps(qa_rows[2], ensure_ascii=False).replace("The", "Th\xe9", 1)
            + "\n"
        ).encode("latin-1"),
    )
    f["gen_latin1"] = write(
        f, "data/latin1.txt", ("The cat lives in the barn .\n" * 3 + "caf\xe9\n").encode("latin-1")
    )
    f["tr_latin1"] = write(
        f,
        "data/latin1-pairs.tsv",
        ("the cat\tle chat\n" * 3 + "caf\xe9\tcaf\xe9\n").encode("latin-1"),
    )
    f["qa_broken"] = write(
        f, "data/qa-broken.jsonl", jsonl(qa_rows[:2]) + json.dumps(qa_rows[2])[:-9] + "\n"
    )
    f["gen_broken"] = write(
        f, "data/gen-broken.jsonl", '{"text": "a"}\n{"text": "b"}\n{"text": "c"\n'
    )
    f["tr_broken"] = write(
        f,
        "data/tr-broken.jsonl",
        jsonl([{"translation": {"en": "a", "fr": "b"}}] * 3) + '{"translation": {"en": "a", \n',
    )
    f["broken_json"] = write(
        f, "data/broken.json", '[{"text": "a", "label": 1},\n {"text": "b" "label": 0}]\n'
    )
    f["number_row"] = write(
        f, "data/number-row.jsonl", jsonl([{"text": s, "label": 1} for s in sentences[:3]]) + "42\n"
    )
    pq.write_table(
        pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}),
        root / "empty.parquet",
    )
    f["empty_parquet"] = root / "empty.parquet"
    f["csv_as_parquet"] = write(f, "data/csv.parquet", "text,label\na fine film,1\n")
    f["zero_parquet"] = write(f, "data/zero.parquet", b"")


def _sentiment(f: Files, train: str, *more: str) -> list[str]:
    return ["run", "sentiment", f"model={f['model']}", f"data.train_path={f[train]}", *more]


def _qa(f: Files, train: str, *more: str) -> list[str]:
    return [
        "run",
        "qa",
        f"model={f['model']}",
        f"data.train_path={f[train]}",
        "options.max_length=64",
        "options.max_question_length=24",
        "options.doc_stride=16",
        *more,
    ]


def _generation(f: Files, train: str, *more: str) -> list[str]:
    return [
        "run",
        "generation",
        f"model={f['gpt2']}",
        f"data.train_path={f[train]}",
        "options.block_size=32",
        *more,
    ]


def _translation(f: Files, train: str, *more: str) -> list[str]:
    return [
        "run",
        "translation",
        f"model={f['gpt2']}",
        f"data.train_path={f[train]}",
        "options.source_lang=en",
        "options.target_lang=fr",
        "options.max_source_length=32",
        "options.max_target_length=32",
        *more,
    ]


TOO_FEW = ("too few to hold out an eval split", "data.eval_path=FILE")

CASES: list[Case] = [
    # ------------------------------------------------------------------ small and odd data
    ("one row, no eval file", lambda f: _sentiment(f, "one_row"), 1, ("has 1 row", *TOO_FEW)),
    ("three rows, eval fraction 0.9", lambda f: _sentiment(f, "three_rows", "data.eval_fraction=0.9"), 1, ("has 3 rows", "data.eval_fraction=0.9", *TOO_FEW)),
    ("qa: one question, no eval file", lambda f: _qa(f, "qa_one"), 1, ("has 1 row", *TOO_FEW)),
    ("generation: one line, no eval file", lambda f: _generation(f, "gen_one"), 1, ("has 1 row", *TOO_FEW)),
    ("generation: one record, no eval file", lambda f: _generation(f, "gen_one_record"), 1, ("has 1 row", *TOO_FEW)),
    ("translation: one pair, no eval file", lambda f: _translation(f, "tr_one"), 1, ("has 1 row", *TOO_FEW)),
    ("labels that are lists", lambda f: _sentiment(f, "label_lists", f"data.eval_path={f['dev']}"), 1, ("Column 'label' (options.label_column) holds lists", "such as [0]", "one value a row")),
    ("labels that are objects", lambda f: _sentiment(f, "label_objects", "~options.label_names"), 1, ("Column 'label' (options.label_column) holds objects", '{"a": 0}')),
    ("labels of numbers and objects", lambda f: _sentiment(f, "label_json", f"data.eval_path={f['dev']}"), 1, ("holds values of several kinds (number, object)", '{"stars": 5}')),
    ("labels of numbers and names in JSON", lambda f: _sentiment(f, "label_kinds", f"data.eval_path={f['dev']}", "~options.label_names"), 1, ("holds values of several kinds (number, text)", '"positive"')),
    ("generation: completions that are objects", lambda f: _generation(f, "completion_objects", f"data.eval_path={f['completion_objects']}"), 1, ("Column 'completion' (options.completion_column) holds objects",)),
    ("translation: a tsv of another pair", lambda f: _translation(f, "tr_other_pair", f"data.eval_path={f['tr_eval']}"), 1, ("line 1 names the languages en and de", "translates en to fr", "options.target_lang")),
    ("translation: a pair without the target", lambda f: _translation(f, "tr_some_without", f"data.eval_path={f['tr_eval']}", "options.empty_pairs=error"), 1, ("row 6 has an empty target", "options.empty_pairs=skip")),
    ("translation: a translation that is a string", lambda f: _translation(f, "tr_strings", f"data.eval_path={f['tr_eval']}"), 1, ("Row 4 of the train data's 'translation' column holds str", "{language: text}")),
    ("prompt with an unknown placeholder", lambda f: _translation(f, "tr_train", f"data.eval_path={f['tr_eval']}", "options.prompt=From {sorce} {text}"), 1, ("'options.prompt' has the placeholder {sorce}", "did you mean {source}?", "{source}, {target}, {text}")),
    ("prompt with a lone brace", lambda f: _translation(f, "tr_train", f"data.eval_path={f['tr_eval']}", "options.prompt=Translate {text}}"), 1, ("'options.prompt' is not a valid template", "write {{ and }}")),
    ("prompt with a positional placeholder", lambda f: _translation(f, "tr_train", f"data.eval_path={f['tr_eval']}", "options.prompt=Say {} {text}"), 1, ("'options.prompt' has the placeholder {}",)),
    ("40 lines read as 39 rows", lambda f: _sentiment(f, "joined_rows", f"data.eval_path={f['dev']}", "~options.label_names"), 1, ("joined.csv", "line 7 starts a field with a quote", "lines 7-8 were read as one row (40 lines, 39 rows)", 'Double the quote ("")')),
    ("a quote swallows rows", lambda f: _sentiment(f, "swallowed_rows", f"data.eval_path={f['dev']}"), 1, ("swallowed.csv", "lines 7-11 were read as one row (40 lines, 36 rows)",)),
    ("tsv without a header row", lambda f: _sentiment(f, "no_header"), 1, ("the data has a film with 0 fine scenes, 0", "if the file has no header row, add one")),
    # ----------------------------------------------------------- files that cannot be parsed
    ("unclosed quote", lambda f: _sentiment(f, "unclosed_quote"), 1, ("unclosed.csv", "line 8 starts a field with a quote", "never closed")),
    ("ragged csv row", lambda f: _sentiment(f, "ragged_csv"), 1, ("ragged.csv", "line 10 has 3 comma-separated fields where the header has 2", "in quotes")),
    ("ragged tsv row", lambda f: _sentiment(f, "ragged_tsv"), 1, ("ragged.tsv", "line 10 has 3 tab-separated cells where the header has 2", "extra tabs")),
    ("csv not UTF-8, says where", lambda f: _sentiment(f, "latin1_csv_late"), 1, ("latin1-late.csv", "not UTF-8", "line 32", "byte offset", "0xe9", "Save it as UTF-8")),
    ("jsonl not UTF-8", lambda f: _sentiment(f, "latin1_jsonl_sent"), 1, ("latin1-sentiment.jsonl", "not UTF-8 (line 5", "0xe9", "Save it as UTF-8")),
    ("qa: jsonl not UTF-8", lambda f: _qa(f, "qa_latin1"), 1, ("qa-latin1.jsonl", "not UTF-8 (line 3", "Save it as UTF-8")),
    ("generation: txt not UTF-8", lambda f: _generation(f, "gen_latin1"), 1, ("latin1.txt", "not UTF-8 (line 4", "Save it as UTF-8")),
    ("translation: tsv not UTF-8", lambda f: _translation(f, "tr_latin1", f"data.eval_path={f['tr_eval']}"), 1, ("latin1-pairs.tsv", "not UTF-8 text (line 4", "Save it as UTF-8")),
    ("qa: broken JSON line", lambda f: _qa(f, "qa_broken"), 1, ("qa-broken.jsonl", "line 3 is not valid JSON", "one JSON object a line")),
    ("generation: broken JSON line", lambda f: _generation(f, "gen_broken"), 1, ("gen-broken.jsonl", "line 3 is not valid JSON",)),
    ("translation: broken JSON line", lambda f: _translation(f, "tr_broken"), 1, ("tr-broken.jsonl", "line 4 is not valid JSON",)),
    ("broken eval file", lambda f: _qa(f, "qa_one", f"data.eval_path={f['qa_broken']}"), 1, ("qa-broken.jsonl", "line 3 is not valid JSON")),
    ("broken json file", lambda f: _sentiment(f, "broken_json"), 1, ("broken.json", "not valid JSON at line 2, column 15", "Expecting ',' delimiter")),
    ("jsonl line that is a number", lambda f: _sentiment(f, "number_row"), 1, ("number-row.jsonl", "line 4 is a number, not a JSON object")),
    ("empty parquet", lambda f: _sentiment(f, "empty_parquet"), 1, ("empty.parquet' has no rows", "2 columns and 0 rows")),
    ("csv named parquet", lambda f: _sentiment(f, "csv_as_parquet"), 1, ("csv.parquet", "it is not a parquet file", "starts with 'text'", ".csv")),
    ("zero-byte parquet", lambda f: _sentiment(f, "zero_parquet"), 1, ("zero.parquet' is empty",)),
]  # fmt: skip
