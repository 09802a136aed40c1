"""Read examples from GLUE directories, plain CSV/TSV/JSON Lines files, or the Hub.

An example is `(texts, label)`: one or two input strings and a label id (classification)
or a float (regression). Every problem with a file is a `DataError` naming the file and,
where there is one, the line.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .tasks import Task

Example = tuple[tuple[str, ...], "int | float"]
DATA_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and line."""


def read_glue_split(
    data_dir: str | Path, task: Task, file_name: str, unlabelled: list[int] | None = None
) -> list[Example]:
    """Read one GLUE file as distributed: tab-separated, no quoting, header unless CoLA.
    `unlabelled`: see `read_table`."""
    if Path(data_dir).is_file():
        raise DataError(
            f"--data-dir {data_dir} is a file, not a folder: pass the folder that holds "
            f"{task.train_file} and {', '.join(task.dev_files)}, or give your own files with "
            "--train-file and --dev-file"
        )
    path = Path(data_dir) / file_name
    if not path.is_file():
        raise DataError(
            f"missing data file {path}: point --data-dir at the task's GLUE folder "
            f"(it should hold {task.train_file} and {', '.join(task.dev_files)})"
        )
    return read_table(
        path, task, delimiter="\t", quoting=csv.QUOTE_NONE, columns=task.columns,
        unlabelled=unlabelled,
    )  # fmt: skip


def read_table(
    path: str | Path,
    task: Task,
    delimiter: str | None = None,
    quoting: int | None = None,
    columns: tuple[str, ...] | None = None,
    unlabelled: list[int] | None = None,
) -> list[Example]:
    """Read a .csv, .tsv or .jsonl/.json file with the task's named columns.

    Rows whose label is empty, NaN or null are refused (DataError naming the file, their
    count and first lines) unless a list is given as `unlabelled`: then they are left out
    and their line numbers appended to it (--drop-empty)."""
    path = Path(path)
    rows = iter_rows(path, delimiter, quoting, columns)
    examples, missing = [], []
    for line, row in rows:
        example = _example(row, task, path, line)
        if example is None:
            missing.append(line)
        else:
            examples.append(example)
    _check_missing_labels(str(path), missing, "line", examples, unlabelled)
    if not examples:
        raise DataError(f"{path} has no examples: the split is empty")
    return examples


def _check_missing_labels(
    source: str, missing: list[int], unit: str, kept: list, unlabelled: list[int] | None
) -> None:
    """Refuse rows without a label, or hand their numbers to `unlabelled` to be dropped."""
    if not missing:
        return
    first = ", ".join(str(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
    rows = f"{len(missing)} rows" if len(missing) > 1 else "1 row"
    where = f"{rows} with an empty or NaN label ({unit}{'s' * (len(missing) > 1)} {first})"
    if unlabelled is None:
        raise DataError(f"{source}: {where}: fill them in, or pass --drop-empty to drop them")
    if not kept:
        raise DataError(f"{source}: every row has an empty or NaN label: check --label-column")
    unlabelled.extend(missing)


def missing_label(raw) -> bool:
    """An empty cell, a JSON null or a NaN (what pandas writes for a missing value): a label
    that was never filled in, not a class of its own."""
    if raw is None:
        return True
    if isinstance(raw, float):
        return math.isnan(raw)
    text = str(raw).strip()
    return not text or text.lower() == "nan"


def read_lines(path: Path) -> list[str]:
    """A .txt file's lines, one sentence each."""
    if not path.is_file():
        raise DataError(f"missing data file {path}: check the path")
    # Universal newlines: "\r\n" and a lone "\r" end a line too (Windows, old Mac files).
    with path.open(encoding="utf-8-sig") as handle:
        return [line.rstrip("\n") for line in handle]


def iter_rows(
    path: Path,
    delimiter: str | None = None,
    quoting: int | None = None,
    columns: tuple[str, ...] | None = None,
):
    """Yield `(line, row dict)` from a .jsonl/.json, .tsv (no quoting) or .csv file."""
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir() if p.suffix in DATA_SUFFIXES)
        example = f", e.g. {path / files[0]}" if files else " (.csv, .tsv or .jsonl)"
        raise DataError(f"{path} is a folder, not a data file: pass the file itself{example}")
    if not path.is_file():
        raise DataError(f"missing data file {path}: check the path")
    if path.suffix in (".jsonl", ".json"):
        return _utf8(path, _json_rows(path))
    if delimiter is None:
        delimiter = "\t" if path.suffix == ".tsv" else ","
    if quoting is None:
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    return _utf8(path, _delimited_rows(path, delimiter, quoting, columns))


def _utf8(path: Path, rows):
    """`rows`, with a file that is not UTF-8 stopped by one line naming where (files are read
    as UTF-8, with or without the byte-order mark that Excel and GLUE's MRPC write)."""
    try:
        yield from rows
    except UnicodeDecodeError:
        # Text files decode ahead in chunks, so the error does not know its line: find it.
        with path.open("rb") as handle:
            for line, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    byte = raw[error.start]
                    raise DataError(
                        f"{path}:{line}: byte 0x{byte:02x} at column {error.start + 1} is not "
                        f"UTF-8; convert the file, e.g. 'iconv -f latin1 -t utf-8 {path.name}'"
                    ) from None
        raise DataError(f"{path} is not UTF-8: convert it with iconv") from None


def _delimited_rows(path: Path, delimiter: str, quoting: int, columns: tuple[str, ...] | None):
    if delimiter == "\t" and quoting == csv.QUOTE_NONE:
        rows = _tab_rows(path)
    else:
        rows = _csv_rows(path, delimiter, quoting)
    header = list(columns) if columns else next(rows, (0, None))[1]
    if header is None:
        return
    for line, row in rows:
        if not row or row == [""]:
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path}:{line}: expected {len(header)} fields separated by "
                f"{delimiter!r}, found {len(row)}; fix or remove that row"
            )
        yield line, dict(zip(header, row, strict=True))


def _tab_rows(path: Path):
    # GLUE files are split on "\n" only: some rows (SST-2) carry a stray "\r" inside a field,
    # which csv and universal newlines would take for a line end.
    with path.open(encoding="utf-8-sig", newline="\n") as handle:
        for line, text in enumerate(handle, start=1):
            yield line, [field.strip("\r\n") for field in text.rstrip("\n").split("\t")]


def _csv_rows(path: Path, delimiter: str, quoting: int):
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        for row in reader:
            yield reader.line_num, row


def _json_rows(path: Path):
    with path.open(encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{line}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line}: expected a JSON object per line")
            yield line, row


def _example(row: dict, task: Task, path: Path, line: int) -> Example | None:
    """The row's example; None when its label is missing (the caller counts those)."""
    missing = [c for c in (*task.text_columns, task.label_column) if c not in row]
    if missing:
        raise DataError(
            f"{path}:{line}: no column {', '.join(map(repr, missing))}; columns are "
            f"{', '.join(map(repr, row))}: pass --text-columns/--label-column"
        )
    if missing_label(row[task.label_column]):
        return None
    texts = tuple(str(row[c]) for c in task.text_columns)
    return texts, parse_label(row[task.label_column], task, f"{path}:{line}")


def parse_label(raw, task: Task, where: str) -> int | float:
    """Map a raw label to its id (classification) or a finite float (regression)."""
    if task.labels is None:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"{where}: label {raw!r} is not a finite number (regression task)")
        return value
    key = str(raw).strip()
    if key not in task.labels:
        raise DataError(
            f"{where}: label {raw!r} is not in the task's label set "
            f"{{{', '.join(task.labels)}}}; fix the row or pick the right task"
        )
    return task.labels.index(key)


def read_hub_dataset(
    dataset: str,
    config_name: str | None,
    split: str,
    task: Task,
    unlabelled: list[int] | None = None,
) -> list[Example]:
    """Read a split of a Hub dataset id (or a local dataset folder) with `datasets`.

    Integer labels with `ClassLabel` features are mapped through their names when those
    match the task's labels, and taken as ids otherwise.
    """
    import datasets

    try:
        data = datasets.load_dataset(dataset, config_name, split=split)
    except Exception as error:  # datasets raises many types for a bad id, split or network
        raise DataError(f"cannot load split '{split}' of dataset '{dataset}': {error}") from None
    feature = data.features.get(task.label_column)
    names = getattr(feature, "names", None)
    examples, missing = [], []
    for index, row in enumerate(data):
        raw = row.get(task.label_column)
        if isinstance(raw, int) and task.labels is not None:
            # ClassLabel ids: use the name when the task knows it, else the id as GLUE writes it.
            in_names = names is not None and 0 <= raw < len(names) and names[raw] in task.labels
            raw = names[raw] if in_names else str(raw)
        example = _example({**row, task.label_column: raw}, task, Path(dataset), index)
        if example is None:
            missing.append(index)
        else:
            examples.append(example)
    _check_missing_labels(f"split '{split}' of {dataset}", missing, "row", examples, unlabelled)
    if not examples:
        raise DataError(f"split '{split}' of dataset '{dataset}' is empty")
    return examples
