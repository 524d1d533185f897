"""Recording a probe's report in a run directory: results.json and the model card."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nlptasks.errors import NlpTasksError


def record_in_run(run_dir: str | Path, report: Mapping[str, Any]) -> Path:
    """Put ``report`` in ``RUN/results.json`` (key ``bias_probes``, replacing an earlier
    probe's) and in ``RUN/README.md`` (its "Bias probes" section); every other key and
    section stays as it was. Both files are written atomically, under the run's shared lock
    and its card lock (evaluations of the same run write them too). Returns results.json."""
    from nlptasks.runs.card import bias_probes_section, with_bias_probes
    from nlptasks.runs.lock import card_lock, run_lock
    from nlptasks.runs.rundir import write_json, write_text

    folder = Path(run_dir)
    results = folder / "results.json"
    if not results.is_file():
        raise NlpTasksError(
            f"'{run_dir}' is not a finished run (it has no results.json). Give --run the "
            f"run's folder, e.g. --run runs/RUN."
        )
    with run_lock(folder, exclusive=False, doing="add the bias probes"), card_lock(folder):
        try:
            found = json.loads(results.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise NlpTasksError(
                f"{results} is not valid JSON ({exc}); the probe was not recorded. Restore the "
                f"file, or drop --run."
            ) from None
        if not isinstance(found, dict):
            raise NlpTasksError(f"{results} is not a JSON object; the probe was not recorded.")
        found["bias_probes"] = dict(report)
        write_json(results, found)
        card = folder / "README.md"
        if card.is_file():
            text = card.read_text(encoding="utf-8")
            write_text(card, with_bias_probes(text, bias_probes_section(report)))
    return results
