"""RefBERT, reconstructed: references, the first layer's reference attention, its ablations,
saving, export and resume (tiny models built in code)."""

from __future__ import annotations

import json
import random
import shutil
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_compact import SUPPORTED, model_of
from test_resume import interrupt
from tiny import tiny_batch, tiny_model
from transformers import AutoModelForSequenceClassification, BertTokenizerFast

from bert_theseus.cli import main
from bert_theseus.compact import layout_for
from bert_theseus.deploy.predict import predict_texts
from bert_theseus.methods.refbert import (
    RefBERTConfig,
    RefBERTMethod,
    ReferenceIndex,
    References,
    ReferenceStudent,
)
from bert_theseus.methods.refbert.model import ReferencesMissingError
from bert_theseus.methods.registry import MethodConfigError
from bert_theseus.methods.truncated import truncate

SPECIAL = [0, 1, 2, 3]  # pad, unk, cls, sep of the tiny tokenizer


def training_set(teacher, kind="tokens", seed=3, rows=12, length=9):
    """References of a small random training set (one row padded), labels 0/1 alternating."""
    batches = []
    for start in range(0, rows, 4):
        batch = tiny_batch(4, length, seed=seed + start)
        batch["labels"] = torch.tensor([0, 1, 0, 1])
        batches.append(batch)
    return References.build(teacher, batches, kind, SPECIAL), batches


def wrapped(arch, mode="nearest", kind="tokens"):
    teacher = model_of(arch)
    references, batches = training_set(teacher, kind)
    student = truncate(teacher, 2)
    return ReferenceStudent.wrap(student, references, mode).eval(), student, batches


def test_no_training_example_references_itself_or_an_identical_one():
    sequences = [[2, 10, 11, 12, 3], [2, 10, 11, 13, 3], [2, 20, 21, 3], [2, 10, 11, 12, 3, 0],
                 [2, 20, 21, 22, 3], [2, 30, 3]]  # fmt: skip
    index = ReferenceIndex.build(sequences, vocab_size=40, ignore_ids=[0, 2, 3])
    picks, similarity = index.nearest(sequences)
    # 0 and 3 are the same tokens (3 only adds padding): neither may reference the other.
    # 5 shares no token with any other: every cosine is 0, and the first one counts.
    assert picks.tolist() == [1, 0, 4, 1, 2, 0]
    for i, pick in enumerate(picks):
        assert pick != i and index.hashes[pick] != index.hashes[i]
    assert similarity[0] == pytest.approx(similarity[3]) and 0 < similarity[0] < 1
    random_picks = index.random(sequences)
    assert all(index.hashes[p] != index.hashes[i] for i, p in enumerate(random_picks))
    assert index.random(sequences).tolist() == random_picks.tolist()  # the same each time
    # Dev inputs follow the same rule: an input identical to a training example skips it.
    assert index.nearest([[2, 20, 21, 3]])[0].tolist() == [4]
    alone = ReferenceIndex.build([[5, 6], [5, 6]], vocab_size=10, ignore_ids=[])
    assert alone.nearest([[5, 6]])[0].tolist() == [-1] and alone.random([[5, 6]]).tolist() == [-1]


def test_stored_states_are_the_predecessors_last_layer_in_fp16():
    teacher = model_of("bert")
    for kind in ("tokens", "cls"):
        references, batches = training_set(teacher, kind)
        batch = batches[0]
        with torch.no_grad():
            last = teacher(**{k: v for k, v in batch.items() if k != "labels"},
                           output_hidden_states=True).hidden_states[-1]  # fmt: skip
        real = int(batch["attention_mask"][0].sum())  # row 0 is padded
        assert real < batch["input_ids"].shape[1]
        states, mask = references.gather(np.array([0, 1]))
        expected = last[0, :real] if kind == "tokens" else last[0, :1]
        assert torch.equal(states[0, : len(expected)], expected.half().float())
        assert mask[0].tolist() == [1] * len(expected) + [0] * (mask.shape[1] - len(expected))
        assert references.states.dtype == np.float16
        assert references.labels.tolist() == [0, 1, 0, 1] * 3
    size = references.nbytes()["states"]
    assert size == 12 * 32 * 2 + 13 * 8  # 12 [CLS] rows of width 32 in fp16, and offsets


@pytest.mark.parametrize("arch", SUPPORTED)
def test_without_references_the_model_is_the_plain_student_bit_for_bit(arch):
    model, student, _ = wrapped(arch)
    batch = tiny_batch()
    with torch.no_grad():
        plain = student(**batch).logits
        model.references = None
        assert torch.equal(model(**batch).logits, plain)
        # Through the reference path with every reference position masked, the attention
        # is rebuilt from the layer table: it must be the architecture's own.
        states = torch.randn(3, 5, 32)
        masked = model(**batch, reference_states=states, reference_mask=torch.zeros(3, 5))
        assert torch.allclose(masked.logits, plain, atol=1e-5)
        used = model(**batch, reference_states=states, reference_mask=torch.ones(3, 5))
        assert not torch.allclose(used.logits, plain, atol=1e-3)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_first_layer_keys_and_values_cover_input_and_reference_and_padding_gets_no_weight(arch):
    model, _, _ = wrapped(arch)
    layout = layout_for(arch)
    first = model.student.base_model.get_submodule(layout.layers)[0]
    shapes = {}

    def record(name):
        def hook(module, args, output):
            shapes[name] = output.shape

        return hook

    hooks = [first.get_submodule(getattr(layout, name)).register_forward_hook(record(name))
             for name in ("query", "key", "value")]  # fmt: skip
    batch = tiny_batch(3, 9)  # row 0 has 3 padded positions
    states, mask = model.retrieve(**batch)
    m = states.shape[1]
    mask[1, -1] = 0  # and one reference with padding
    with torch.no_grad():
        out = model(**batch, reference_states=states, reference_mask=mask,
                    output_hidden_states=True)  # fmt: skip
    for hook in hooks:
        hook.remove()
    assert shapes["query"][1] == 9 and shapes["key"][1] == shapes["value"][1] == 9 + m
    assert all(h.shape[1] == 9 for h in out.hidden_states)  # the output keeps length n
    probabilities = model.attention.probabilities  # [batch, heads, n, n + m]
    assert probabilities.shape[-2:] == (9, 9 + m)
    keep = torch.cat([batch["attention_mask"], mask], dim=1).bool()
    assert torch.all(probabilities.permute(0, 2, 1, 3)[~keep[:, None, None, :].expand(
        -1, 9, probabilities.shape[1], -1)] == 0)  # fmt: skip
    assert torch.all(probabilities[0, :, :, 6:9] == 0) and torch.all(probabilities[1, ..., -1] == 0)
    assert torch.allclose(probabilities.sum(-1), torch.ones(()), atol=1e-6)
    assert probabilities[:, :, :, 9:].sum() > 0  # the reference does get attention


def test_the_ablations_run_through_the_same_code():
    nearest, _, _ = wrapped("bert", "nearest")
    batch = tiny_batch()
    picks = nearest.picks(**batch)
    states, mask = nearest.retrieve(**batch)
    outputs = {}
    for mode in ("nearest", "zero", "random"):
        model, _, _ = wrapped("bert", mode)
        with torch.no_grad():
            outputs[mode] = model(**batch).logits
        got_states, got_mask = model.retrieve(**batch)
        if mode == "zero":  # the nearest one's shape and mask, no content
            assert torch.equal(got_mask, mask) and not got_states.any()
        if mode == "random":
            random_picks = model.picks(**batch)
            assert not np.array_equal(random_picks, picks)
            expected, _ = model.references.gather(random_picks)
            assert torch.equal(got_states, expected)
        probabilities = model.attention.probabilities  # the same reference attention ran
        assert probabilities.shape[-1] == batch["input_ids"].shape[1] + got_mask.shape[1]
    assert not torch.equal(outputs["nearest"], outputs["zero"])
    assert not torch.equal(outputs["nearest"], outputs["random"])


def test_the_intermediate_loss_is_zero_for_a_full_depth_student_without_references():
    teacher = model_of("bert")
    student = truncate(teacher, 4)
    config = RefBERTConfig(successor_layers=4)
    assert config.teacher_layers(teacher) == [1, 2, 3, 4]
    assert RefBERTConfig(successor_layers=2).teacher_layers(teacher) == [2, 4]
    method = RefBERTMethod(student, teacher, config, False, "intermediate", [1, 2, 3, 4])
    loss = method.loss(student.eval(), {**tiny_batch(), "labels": torch.tensor([0, 1, 1])})
    assert loss.item() == 0.0 and set(method.last) == {"embedding", "attention", "hidden"}
    prediction = RefBERTMethod(student, teacher, config, False, "prediction", [1, 2, 3, 4])
    assert prediction.loss(student, {**tiny_batch(), "labels": torch.tensor([0, 1, 1])}) == 0
    with pytest.raises(MethodConfigError, match="reference_states"):
        RefBERTConfig(successor_layers=2, reference_states="words").validate()
    with pytest.raises(MethodConfigError, match="intermediate_share"):
        RefBERTConfig(successor_layers=2, intermediate_share=1.0).validate()


FAST = ["--batch-size", "8", "--learning-rate", "1e-3", "--mixed-precision", "no", "--seed", "7"]


def compress(predecessor, data, output, *extra, method="refbert") -> list[str]:
    return [
        "compress", "--model", str(predecessor), "--task", "sst2", "--data-dir", str(data),
        "--output", str(output), "--method", method, "--successor-layers", "2", *FAST, *extra,
    ]  # fmt: skip


def test_compress_saves_a_model_with_its_references_that_reloads_and_exports(
    tiny_bert_dir, sst2_dir, tmp_path
):
    out = tmp_path / "refbert"
    args = ["--max-steps", "8", "--eval-steps", "4", "--intermediate-share", "0.5"]
    assert main(compress(tiny_bert_dir, sst2_dir, out, *args)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["intermediate", "prediction"]
    assert [s["steps"] for s in metrics["stages"]] == [4, 4]
    references = metrics["stages"][-1]["summary"]["references"]
    assert references["examples"] == 64 and references["mode"] == "nearest"
    assert 0.0 <= references["dev_label_agreement"] <= 1.0
    assert set(metrics["reference_latency_ms"]) == {"retrieval", "student", "together"}
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert isinstance(model, ReferenceStudent) and len(model.references.index) == 64
    assert metrics["reference_bytes"] == model.references.nbytes()
    assert isinstance(model.references.states, np.memmap)  # read from disk as needed
    encoded = model.references.states.shape[0]
    assert encoded == model.references.offsets[-1] > 64  # every token of every example
    onnx = tmp_path / "onnx"
    assert main(["export", str(out), "--onnx", "--output", str(onnx), "--task", "sst2",
                 "--data-dir", str(sst2_dir)]) == 0  # fmt: skip
    report = json.loads((onnx / "export.json").read_text())
    assert report["inputs"][-2:] == ["reference_states", "reference_mask"]
    assert report["fp32"]["max_abs_logit_diff"] < 1e-4
    assert (onnx / "references" / "states.npy").is_file()
    # predict and benchmark retrieve by themselves, from the PyTorch folder and the export.
    texts = ["good w1 w2 w3", "bad w4", "w5 w6 good"]
    answers = [predict_texts(str(folder), texts) for folder in (out, onnx)]
    assert [a["label"] for a in answers[0]] == [a["label"] for a in answers[1]]
    assert [a["score"] for a in answers[0]] == pytest.approx([a["score"] for a in answers[1]],
                                                             abs=1e-4)  # fmt: skip
    bench = tmp_path / "bench.json"
    assert main(["benchmark", str(out), "--variants", "torch-fp32", "onnx-fp32", "--lengths",
                 "8", "--latency-repeats", "1", "--throughput-repeats", "1", "--skip-memory",
                 "--output", str(bench)]) == 0  # fmt: skip
    variants = [row["variant"] for row in json.loads(bench.read_text())["results"]]
    assert variants == ["torch-fp32", "retrieval", "torch-fp32, references given", "onnx-fp32"]
    shutil.rmtree(out / "references")
    assert main(["evaluate", "--model", str(out), "--task", "sst2", "--data-dir",
                 str(sst2_dir)]) == 2  # fmt: skip
    with pytest.raises(ReferencesMissingError, match="references/"):
        AutoModelForSequenceClassification.from_pretrained(out)


def test_the_none_ablation_saves_the_plain_student(tiny_bert_dir, sst2_dir, tmp_path):
    out = tmp_path / "none"
    assert main(compress(tiny_bert_dir, sst2_dir, out, "--max-steps", "4",
                         method="refbert-none")) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert "stages" not in metrics and metrics["layers"] == 2  # the default: prediction only
    assert metrics["steps"] == 4
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert not (out / "references").exists()


def test_the_intermediate_stage_keeps_its_last_weights(tokenizer_dir, sst2_dir, tmp_path):
    """Its loss never reaches the head, so its dev scores choose nothing. With a zero
    classifier every evaluation ties, where a best-on-dev rule keeps the first one's weights
    and throws the rest of the stage away."""
    predecessor = tmp_path / "zero-head"
    model = tiny_model("bert", layers=4)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    model.save_pretrained(predecessor)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(predecessor)
    out = tmp_path / "two-stages"
    args = ["--max-steps", "8", "--eval-steps", "2", "--intermediate-share", "0.5"]
    assert main(compress(predecessor, sst2_dir, out, *args, method="refbert-none")) == 0
    intermediate, prediction = json.loads((out / "metrics.json").read_text())["stages"]
    assert intermediate["constant_output_steps"] == [2, 4]  # one answer: every score ties
    assert intermediate["best_step"] == intermediate["steps"] == 4
    assert prediction["steps"] == 4


@pytest.mark.parametrize("stage", ["1-intermediate", "2-prediction"])
def test_a_run_killed_with_sigkill_resumes_bit_identically(
    stage, dropout_bert_dir, sst2_dir, tmp_path
):
    """Killed in the first stage, the resume builds the references again (the same ones);
    in the second, it reads them back with the first stage's model."""
    args = ["--max-steps", "40", "--eval-steps", "10", "--save-steps", "2",
            "--intermediate-share", "0.5"]  # fmt: skip
    straight = tmp_path / "straight"
    assert main(compress(dropout_bert_dir, sst2_dir, straight, *args)) == 0
    out = tmp_path / "killed"
    stage = tmp_path / ".killed.partial" / "stages" / stage
    after = random.randint(2, 16)
    interrupt(compress(dropout_bert_dir, sst2_dir, out, *args), stage, after, signal.SIGKILL)
    assert not out.exists()
    assert (stage.parent / "1-intermediate" / "result.json").is_file() == (stage.name[0] == "2")
    assert main([*compress(dropout_bert_dir, sst2_dir, out, *args), "--resume", "auto"]) == 0
    a, b = load_file(straight / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"after {after}"
    assert "reference_projection.weight" in a


def test_compare_runs_refbert_beside_its_ablations_and_kd(tiny_bert_dir, sst2_dir, tmp_path):
    out = tmp_path / "compare"
    methods = ["refbert", "refbert-none", "refbert-zero", "refbert-random", "kd"]
    args = ["compare", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir",
            str(sst2_dir), "--output", str(out), "--methods", *methods, "--successor-layers",
            "2", "--max-steps", "4", "--speed-batch-size", "2", "--speed-length", "8",
            "--reference-states", "cls", *FAST]  # fmt: skip
    assert main(args) == 0
    rows = (out / "results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["predecessor", *methods]
    for mode in ("nearest", "zero", "random"):
        name = "refbert" if mode == "nearest" else f"refbert-{mode}"
        model = AutoModelForSequenceClassification.from_pretrained(out / "runs" / f"{name}-seed42")
        assert model.config.reference_mode == mode and model.config.reference_states == "cls"
        assert model.references.states.shape[0] == 64  # one [CLS] row per training example
        metrics = json.loads((out / "runs" / f"{name}-seed42" / "metrics.json").read_text())
        assert set(metrics["reference_latency_ms"]) == {"retrieval", "student", "together"}


def test_a_loaded_model_saved_back_into_its_folder_keeps_its_references(tmp_path):
    model, _, _ = wrapped("bert")
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.references.states, np.memmap)
    batch = tiny_batch()
    with torch.no_grad():
        before = loaded(**batch).logits
    loaded.save_pretrained(tmp_path)  # over the files its states are mapped from
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(again(**batch).logits, before)


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_attention_weights_come_back_through_the_reference_path(arch):
    model, _, _ = wrapped(arch)
    with torch.no_grad():
        out = model(**tiny_batch(), output_attentions=True)
    m = model.retrieve(**tiny_batch())[1].shape[1]
    assert out.attentions[0].shape[-2:] == (9, 9 + m)  # the first layer's, over n + m keys


def test_refbert_refuses_an_architecture_outside_the_layer_table(tmp_path):
    from bert_theseus.methods import MethodContext

    context = MethodContext(model_of("bert"))
    RefBERTConfig(successor_layers=2).check(context)
    from tiny import tiny_model

    deberta = MethodContext(tiny_model("deberta-v2", layers=4))
    with pytest.raises(MethodConfigError, match="RefBERT cannot extend .* 'deberta-v2'"):
        RefBERTConfig(successor_layers=2).check(deberta)
