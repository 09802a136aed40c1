"""Where the examples come from: the data flags of every command (light to import, so the
CLI builds its parser without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Where the examples come from (see `load_task_data`)."""

    task: str | None = field(
        default=None,
        metadata={"help": "GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli"},
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "folder with the task's GLUE files (train.tsv, dev.tsv)"}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "your own training file (.csv, .tsv or .jsonl)"}
    )
    dev_file: str | None = field(
        default=None, metadata={"help": "your own dev file, used to select checkpoints"}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "a labelled test file, scored once at the end"}
    )
    text_columns: list[str] | None = field(
        default=None, metadata={"help": "input column(s) of your files (one, or two for pairs)"}
    )
    label_column: str | None = field(
        default=None, metadata={"help": "label column of your files (default: label)"}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "a Hub dataset id instead of files (needs the network)"}
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "the Hub dataset's configuration, e.g. sst2 for glue"}
    )
    regression: bool = field(
        default=False, metadata={"help": "your own files hold a numeric score, not classes"}
    )
    drop_empty: bool = field(
        default=False,
        metadata={
            "help": "drop rows whose text or label is empty or NaN; says how many; by "
            "default empty texts are kept and counted, and empty labels refused"
        },
    )
