"""`theseus extract`: save one sub-network of a trained DynaBERT model as its own model.

(Not named extract.py: that module would shadow the `extract` function in the package.)
"""

from __future__ import annotations

import json
from pathlib import Path

from ...card import card_header, command_line, final_folder, hub_results, usage_lines
from ...models import ModelError, load_model
from ...runs import OutputDir, input_paths, write_json
from ...speed import count_parameters
from .adaptive import cell_name, extract, kept_layers, trained_rule

ATTRIBUTE = "dynabert"  # config.json entry of a trained model: its widths and depths


def extract_to(
    model: str,
    width: float,
    depth: float,
    output: str,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> dict:
    """Cut the sub-network (width, depth) out of the DynaBERT model in folder `model` and save
    it, with the tokenizer, to `output`: a model that loads with `from_pretrained` and
    computes what the sub-network computes. Returns what `extract.json` records.

    >>> extract_to("runs/dynabert", width=0.25, depth=0.5, output="runs/dynabert-small")
    """
    out = OutputDir(output, overwrite, inputs=input_paths(model))  # refused before any work
    source, tokenizer = load_model(model, trust_remote_code)
    trained = getattr(source.config, ATTRIBUTE, None)
    if not trained:
        raise ModelError(
            f"{model} is not a DynaBERT model (its config.json has no '{ATTRIBUTE}' entry): "
            "train one with 'theseus compress --method dynabert'"
        )
    if width not in trained["widths"] or depth not in trained["depths"]:
        raise ModelError(
            f"width {width:g}, depth {depth:g} was not trained in {model} (widths "
            f"{' '.join(f'{w:g}' for w in trained['widths'])}; depths "
            f"{' '.join(f'{d:g}' for d in trained['depths'])}): pass one of those"
        )
    small = extract(source, width, depth)
    if hasattr(small.config, ATTRIBUTE):
        delattr(small.config, ATTRIBUTE)  # one fixed size now: nothing left to extract
    info = {
        "source": str(model),
        "width": width,
        "depth": depth,
        "layers": small.config.num_hidden_layers,
        "kept_layers": kept_layers(depth, source.config.num_hidden_layers, trained_rule(source)),
        "parameters": count_parameters(small),
        "source_parameters": count_parameters(source),
        "class": type(small).__name__,
    }
    task, scores = _scores(Path(model), cell_name(width, depth))
    info.update(scores)
    folder = out.open()
    try:
        small.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        write_extract_card(folder, info, task)
        write_json(folder / "extract.json", info)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return {**info, "output": str(output)}


def _scores(folder: Path, cell: str) -> tuple[str | None, dict]:
    """The training run's task and the cell's dev scores, from its metrics.json where there
    is one (None and nothing otherwise)."""
    metrics = folder / "metrics.json"
    if not metrics.is_file():
        return None, {}
    recorded = json.loads(metrics.read_text())
    dev, suffix = recorded.get("dev", {}), f"@{cell}"
    scores = {key.removesuffix(suffix): value for key, value in dev.items() if key.endswith(suffix)}
    return recorded.get("task"), ({"dev": scores} if scores else {})


def write_extract_card(folder: Path, info: dict, task: str | None) -> None:
    """Write `folder/README.md` for a sub-network cut out of a DynaBERT model by `theseus
    extract`; `info` is what extract.json records, `task` the training run's task (None
    when the source folder has no metrics.json: the card then lists no scores)."""
    name = final_folder(folder).name
    scores = {"task": task, "dev": info.get("dev", {})} if task else None
    header = card_header(name, "dynabert", info["source"], hub_results(scores) if scores else [])
    lines = [
        f"# {name}",
        "",
        f"The width {info['width']:g}, depth {info['depth']:g} sub-network of the DynaBERT "
        f"model `{info['source']}`, cut out by [bert-theseus](https://pypi.org/project/"
        "bert-theseus/)'s `theseus extract`: a standalone model that computes what the "
        "sub-network computes.",
        "",
        f"- {info['layers']} layers (the source's {', '.join(map(str, info['kept_layers']))}), "
        f"{info['parameters']:,} parameters (the source has {info['source_parameters']:,}).",
    ]
    lines += [
        f"- {split} score in training: {values['score']:.4f}"
        + (f" on the task `{task}`." if task else ".")
        for split, values in info.get("dev", {}).items()
    ]
    lines += ["", "## How it was made", "", "```bash", command_line(), "```"]
    text = header + "\n".join(lines + usage_lines(folder)) + "\n"
    (Path(folder) / "README.md").write_text(text)
