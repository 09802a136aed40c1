"""A model card (README.md in the Hugging Face format) in every run's folder, and the upload.

The YAML header is what the Hub indexes: `library_name`, `base_model` (when the
predecessor is a Hub id; a local folder is named in the text instead, since the Hub
rejects a `base_model` that is not a repository), `pipeline_tag` and a `model-index` whose
metric values are exactly those of `metrics.json`. The text says the method, the
predecessor, sizes, scores, retention, the measured speed-up and the command that made it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .training import TrainingConfig

_command: str | None = None
HUB_METRICS = {"accuracy": "accuracy", "f1": "f1", "matthews": "matthews_correlation",
               "pearson": "pearsonr", "spearman": "spearmanr",
               "spearman_cosine": "spearman_cosine", "pearson_cosine": "pearson_cosine",
               "cosine": "cosine_similarity"}  # fmt: skip
# The Hub's pipeline of each kind of model this toolkit makes.
PIPELINES = {False: ("text-classification", "Text Classification"),
             True: ("sentence-similarity", "Semantic Similarity")}  # fmt: skip


def set_command(argv: list[str]) -> None:
    """Record the command line that makes the runs of this process (the CLI calls this)."""
    global _command
    _command = shlex.join(["theseus", *argv])


def write_model_card(
    folder: Path,
    metrics: dict,
    settings: dict,
    training: TrainingConfig,
    repo_id: str | None = None,
    method=None,
) -> None:
    """Write `folder/README.md` for a finished run described by `metrics` and `settings`;
    `repo_id` is the Hub repository it is pushed to, if it is (its usage snippet loads that).
    `method` is the registered method that made it (its `MethodSpec`; None for a fine-tuning):
    passed in, so that the card, below the methods, never imports them."""
    name = final_folder(folder).name
    embedding = "embedding" in settings  # a sentence-transformers student
    results = hub_results(metrics, embedding)
    header = card_header(name, metrics["method"], settings["model"], results, embedding)
    usage = usage_lines(folder, repo_id, embedding)
    lines = _body(name, metrics, settings, training, method) + usage
    (Path(folder) / "README.md").write_text(header + "\n".join(lines) + "\n")


_API = "# made through the Python API (bert_theseus); settings below"


def command_line() -> str:
    """The command that made this process's runs (or a note that the API made them)."""
    return _command or _API


def final_folder(folder: Path) -> Path:
    """The absolute path a run's folder has once complete (runs are written to
    `.NAME.partial` beside it, then renamed)."""
    folder = Path(folder).absolute()
    return folder.with_name(folder.name.removeprefix(".").removesuffix(".partial"))


def card_header(
    name: str, method: str, source: str, results: list[dict], embedding: bool = False
) -> str:
    """The YAML block the Hub indexes (`method` is one of its tags); a sentence-embedding
    student's is sentence-transformers' (its library, pipeline and tags)."""
    import yaml

    pipeline = PIPELINES[embedding][0]
    header = {
        "library_name": "sentence-transformers" if embedding else "bert-theseus",
        "pipeline_tag": pipeline,
        "tags": ["bert-theseus", method, pipeline],
    }
    if embedding:
        header["tags"] += ["sentence-transformers", "feature-extraction"]
    if _is_hub_id(source):
        header["base_model"] = source
    header["model-index"] = [{"name": name, "results": results}]
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n"


# What the model card's "Use" section runs, by kind of model ({where}: the model to load).
_REGISTERS = "import bert_theseus  # registers bert-theseus's compact model family"
USES = {
    False: [f"{_REGISTERS} with transformers",
            "from transformers import pipeline", "",
            'classifier = pipeline("text-classification", model={where}){moved}',
            'print(classifier("a gripping, beautifully acted film"))'],
    True: [f"{_REGISTERS} (width-cut students)",
           "from sentence_transformers import SentenceTransformer", "",
           "model = SentenceTransformer({where}){moved}",
           'embeddings = model.encode(["a first sentence", "another one"])',
           "print(model.similarity(embeddings, embeddings))"],
}  # fmt: skip


def usage_lines(folder: Path, repo_id: str | None = None, embedding: bool = False) -> list[str]:
    """How to load the model (a classifier, or with `embedding` a sentence-transformers
    model): by its Hub id after a push, else by the folder's absolute path, so the snippet
    works from any working directory."""
    where = json.dumps(repo_id or str(final_folder(folder)))
    moved = "" if repo_id else "  # the folder's path: change it if you move the folder"
    code = [line.format(where=where, moved=moved) for line in USES[embedding]]
    return ["", "## Use", "", "```python", *code, "```"]


def _is_hub_id(name: str) -> bool:
    return not Path(name).exists() and name.count("/") <= 1 and not name.startswith((".", "/"))


def hub_results(metrics: dict, embedding: bool = False) -> list[dict]:
    """The model-index results: every dev split's (and the test's) Hub metrics."""
    kind, title = PIPELINES[embedding]
    results = []
    # Views ("dev@VIEW": models inside the run, a method's variants) are not dataset splits.
    splits = [(split, values) for split, values in metrics["dev"].items() if "@" not in split]
    if "test" in metrics:
        splits.append(("test", metrics["test"]))
    for split, values in splits:
        hub = [
            {"type": HUB_METRICS[key], "value": value, "name": f"{split} {key}"}
            for key, value in values.items()
            if key in HUB_METRICS
        ]
        results.append(
            {
                "task": {"type": kind, "name": title},
                "dataset": {"name": metrics["task"], "type": metrics["task"], "split": split},
                "metrics": hub,
            }
        )
    return results


def _body(name: str, metrics: dict, settings: dict, training: TrainingConfig, spec) -> list[str]:
    method = metrics["method"]
    lines = [f"# {name}", ""]
    if spec is not None:
        lines += [
            f"`{settings['model']}` compressed with **{method}** ({spec.summary}; "
            f"{spec.paper}), by [bert-theseus](https://pypi.org/project/bert-theseus/), "
            f"on the task `{metrics['task']}`.",
        ]
    else:
        lines += [f"`{settings['model']}` fine-tuned on the task `{metrics['task']}` by "
                  "bert-theseus, as a predecessor to compress."]  # fmt: skip
    split = next(iter(metrics["dev"]))
    score = metrics["dev"][split]["score"]
    lines += ["", f"Scores are {split} scores, and checkpoints were selected on {split}.", ""]
    if "predecessor_dev" in metrics:
        before = metrics["predecessor_dev"][split]["score"]
        lines += [
            "| | predecessor | this model |",
            "|---|---|---|",
            f"| layers | {metrics['predecessor_layers']} | {metrics['layers']} |",
            f"| parameters | {metrics['predecessor_parameters']:,} | {metrics['parameters']:,} |",
            *_nonzero_row(metrics),
            f"| {split} score | {before:.4f} | {score:.4f} |",
            "",
            f"- Retention: {metrics['retention_percent']}% of the predecessor's {split} score.",
        ]
        if "speedup" in metrics:
            lines.append(f"- Speed-up: {metrics['speedup']}x ({metrics['speed_setting']}).")
    else:
        lines += [
            f"- {metrics['layers']} layers, {metrics['parameters']:,} parameters.",
            f"- {split} score: {score:.4f}.",
        ]
    if "test" in metrics:
        lines.append(f"- Test score: {metrics['test']['score']:.4f}.")
    lines += _evaluator_lines(metrics.get("sentence_transformers", {}))
    lines += _method_lines(spec, metrics, split)
    if metrics.get("constant_at_best"):
        lines.append(
            "- **Warning:** this model gives the same answer for every dev example: it ignores "
            "its input, and its score is that of a constant."
        )
    lines += _examples_lines(metrics, spec)
    lines += [
        f"- Trained {metrics['steps']} optimizer steps in {metrics['train_seconds']} s"
        f"{_precision(metrics)}; "
        f"best {split} score at step {metrics['best_step']}.",
        "",
        "## How it was made",
        "",
        "```bash",
        command_line(),
        "```",
        "",
        "Settings (`run_config.json` holds them all, with the training settings):",
        "",
        "```json",
        json.dumps(_shown_settings(settings, training), indent=2, default=str),
        "```",
    ]
    return lines


def _examples_lines(metrics: dict, spec=None) -> list[str]:
    """What the run trained on, and what its rows without labels trained, as the method
    says (runs made before it was recorded say nothing)."""
    counts = metrics.get("training_examples")
    if counts is None:
        return []
    line = f"- Training data: {counts['labelled']:,} labelled examples"
    if counts["unlabelled"] or counts["augmented"]:
        what = getattr(spec, "unlabelled", None) or "the teacher's outputs alone"
        line += (
            f", {counts['unlabelled']:,} unlabelled and {counts['augmented']:,} augmented "
            f"(these train the teacher term alone: {what})"
        )
    return [line + "."]


def _evaluator_lines(scores: dict) -> list[str]:
    """sentence-transformers' own evaluation of a sentence-embedding student."""
    return [
        f"- sentence-transformers' EmbeddingSimilarityEvaluator on the {split} pairs: Spearman "
        f"{100 * entry['student']['spearman_cosine']:.2f} (predecessor "
        f"{100 * entry['predecessor']['spearman_cosine']:.2f}; {entry['retention_percent']}% "
        "retained)."
        for split, entry in scores.items()
    ]


def _precision(metrics: dict) -> str:
    """The precision the run trained in (what `--mixed-precision auto` resolved to)."""
    precision = metrics.get("mixed_precision")
    if precision is None:  # runs made before it was recorded
        return ""
    return " in fp32" if precision == "no" else f" with {precision} mixed precision"


def _nonzero_row(metrics: dict) -> list[str]:
    """A row of non-zero parameters where pruning left zeros stored among the weights."""
    from .speed import is_pruned

    nonzero = metrics.get("nonzero_parameters", metrics["parameters"])
    if not is_pruned(metrics["parameters"], nonzero):
        return []
    return [f"| non-zero parameters | {metrics['predecessor_parameters']:,} | {nonzero:,} |"]


def _method_lines(spec, metrics: dict, split: str) -> list[str]:
    """The method's own results, as its registration words them for a card."""
    return spec.card_lines(metrics, split) if spec is not None and spec.card_lines else []


def _shown_settings(settings: dict, training: TrainingConfig) -> dict:
    keys = ("epochs", "max_steps", "batch_size", "learning_rate", "seed", "max_length")
    shown = {k: v for k, v in settings.items() if k != "data"}
    return {**shown, "training": {key: getattr(training, key) for key in keys}}


def push_to_hub(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload a finished run's folder to the Hub repository `repo_id` (created if needed).

    >>> push_to_hub(Path("runs/successor"), "me/minilm-sst2-3layer")
    """
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message="Upload a model made with bert-theseus",
        ignore_patterns=["checkpoints/*", "stages/*/model/*"],
    )
    return str(getattr(commit, "commit_url", commit))
