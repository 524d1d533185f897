"""The bias probe's report for people in the terminal (the card's section is
:func:`nlptasks.runs.card.bias_probes_section`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlptasks.runs.card import probe_data_line as _data_line
from nlptasks.runs.card import probe_interval as _interval


def _others(pair: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{name} {found['value']:.3g}"
        for name, found in pair["measures"].items()
        if name != pair["primary"] and isinstance(found.get("value"), (int, float))
    )


def render(report: Mapping[str, Any]) -> None:
    """Print the report to the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    data = report["data"]
    console.print(
        f"[bold]Bias probe[/bold] of {report['model']} (task {report['task']}, "
        f"{report['pipeline_tag']})"
    )
    console.print(f"Measure: {report['measure']['description']}")
    console.print(f"Records from {data['source']}" + (f" ({data['note']})" if data["note"] else ""))
    console.print(f"Records mentioning one group: {_data_line(report)}")
    table = Table(title="Per group pair (95% bootstrap intervals)", title_justify="left")
    columns = ("dimension", "pair", "items (data)", "measure", "value [95%]", "other", "signal")
    for column in columns:
        table.add_column(column)
    for pair in report["pairs"]:
        table.add_row(
            pair["dimension"],
            pair["pair"],
            f"{pair['items']} ({pair['from_data']})",
            pair["primary"],
            _interval(pair["measures"].get(pair["primary"], {})),
            _others(pair),
            "[red]yes[/red]" if pair["signal"] else "no",
        )
    console.print(table)
    if report["top_changes"]:
        console.print("[bold]Largest changes[/bold]")
        for one in report["top_changes"]:
            console.print(
                f"- {one['dimension']} ({one['pair']}, {one['origin']}), change "
                f"{one['change']:.3g}:\n    a: {_fields(one['a'])} -> {one['output_a']}\n"
                f"    b: {_fields(one['b'])} -> {one['output_b']}",
                markup=False,
                highlight=False,
            )
    console.print(f"[bold]Method[/bold]: {report['method']}")
    console.print("[bold]Limits[/bold]:")
    for limit in report["limits"]:
        console.print(f"- {limit}", markup=False, highlight=False)


def _fields(record: Mapping[str, Any]) -> str:
    if len(record) == 1:
        return repr(next(iter(record.values())))
    return ", ".join(f"{k}={v!r}" for k, v in record.items())
