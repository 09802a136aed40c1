"""A predecessor pre-trained for mean pooling is named as such when loaded, and the
fine-tuned folder remembers it."""

from __future__ import annotations

import json

import pytest

from bert_theseus.cli import main
from bert_theseus.pooling import pretraining_pooling

FAST = ["--max-steps", "2", "--batch-size", "8", "--mixed-precision", "no"]


@pytest.fixture
def sentence_model(tmp_path, tiny_bert_dir):
    """The tiny BERT laid out like a sentence-transformers checkpoint (mean pooling)."""
    folder = tmp_path / "sentence-model"
    folder.mkdir()
    for file in tiny_bert_dir.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    pooling = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}
    (folder / "1_Pooling/config.json").write_text(json.dumps(pooling))
    return folder


def test_pooling_is_read_from_the_sentence_transformers_files(sentence_model, tiny_bert_dir):
    assert pretraining_pooling(str(sentence_model)) == "mean"
    assert pretraining_pooling(str(tiny_bert_dir)) is None
    cls = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    (sentence_model / "1_Pooling/config.json").write_text(json.dumps(cls))
    assert pretraining_pooling(str(sentence_model)) == "cls"


def test_finetune_records_mean_pooling_and_compress_says_what_it_means(
    sentence_model, sst2_dir, tmp_path, capsys
):
    teacher = tmp_path / "teacher"
    data = ["--task", "sst2", "--data-dir", str(sst2_dir)]
    assert (
        main(["finetune", "--model", str(sentence_model), *data, "--output", str(teacher), *FAST])
        == 0
    )
    err = capsys.readouterr().err
    assert f"note: {sentence_model} was pre-trained for mean pooling" in err
    assert json.loads((teacher / "config.json").read_text())["pretraining_pooling"] == "mean"
    assert not (teacher / "modules.json").exists()

    out = tmp_path / "successor"
    args = ["compress", "--model", str(teacher), *data, "--output", str(out)]
    assert main([*args, "--successor-layers", "2", *FAST]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [
        f"note: {teacher} was pre-trained for mean pooling (sentence-transformers); the "
        "classification head reads [CLS], which carries little input information below its "
        "top layers, so students cut from lower layers must learn to fill it (README: "
        "'Sentence-embedding predecessors')"
    ]
