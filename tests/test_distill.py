"""The baselines' pieces: soft-target and patient losses, layer maps, truncated students."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from tiny import ARCHITECTURES, tiny_batch, tiny_model
from transformers import AutoModel

from bert_theseus import (
    Distiller,
    KDConfig,
    PKDConfig,
    TheseusKDConfig,
    TheseusKDMethod,
    TruncatedConfig,
    patient_loss,
    pkd_layer_map,
    soft_target_loss,
    truncate,
)
from bert_theseus.arch import find_layers_path
from bert_theseus.commands import DataConfig, ModelError, method_settings
from bert_theseus.data.tasks import get_task
from bert_theseus.methods import MethodConfigError, MethodContext, get_method, methods
from bert_theseus.methods.theseus.model import theseus_layers


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, 20.0])
def test_soft_target_loss_is_zero_when_student_equals_teacher(temperature):
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)) * 4
    assert soft_target_loss(logits, logits.clone(), temperature).item() == pytest.approx(
        0, abs=1e-6
    )
    other = logits + torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    assert soft_target_loss(other, logits, temperature).item() > 1e-4


def test_soft_target_loss_is_t_squared_soft_cross_entropy_minus_teacher_entropy():
    generator = torch.Generator().manual_seed(2)
    student, teacher = (
        torch.randn(5, 4, generator=generator),
        torch.randn(5, 4, generator=generator),
    )
    t = 3.0
    p = F.softmax(teacher / t, -1)
    soft_ce = -(p * F.log_softmax(student / t, -1)).sum(-1).mean()
    entropy = -(p * p.log()).sum(-1).mean()
    expected = t**2 * (soft_ce - entropy)
    assert soft_target_loss(student, teacher, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_soft_target_loss_for_regression_is_mse_and_zero_at_equality():
    scores = torch.tensor([[0.5], [3.2], [4.9]])
    assert soft_target_loss(scores, scores.clone(), 5.0, regression=True).item() == 0.0
    moved = scores + torch.tensor([[1.0], [0.0], [-2.0]])
    assert soft_target_loss(moved, scores, 5.0, regression=True).item() == pytest.approx(5 / 3)


def test_patient_loss_is_zero_for_identical_normalised_states():
    generator = torch.Generator().manual_seed(3)
    teacher = tuple(torch.randn(4, 7, 16, generator=generator) for _ in range(7))
    # The student's states point the same way at another scale: normalising removes scale.
    student = tuple(2.5 * teacher[j] for j in (0, 2, 4, 6))
    layer_map = [(1, 2), (2, 4)]
    assert patient_loss(student, teacher, layer_map).item() == pytest.approx(0, abs=1e-7)
    shifted = (student[0], student[1] + 1.0, student[2], student[3])
    s = F.normalize(shifted[1][:, 0], dim=-1)
    t = F.normalize(teacher[2][:, 0], dim=-1)
    expected = ((s - t) ** 2).mean()
    assert patient_loss(shifted, teacher, layer_map).item() == pytest.approx(expected.item())


@pytest.mark.parametrize(
    "teacher, student, expected",
    [
        (12, 6, [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]),
        (12, 4, [(1, 3), (2, 6), (3, 9)]),
        (6, 3, [(1, 2), (2, 4)]),
        (12, 3, [(1, 4), (2, 8)]),
    ],
)
def test_pkd_skip_layer_maps(teacher, student, expected):
    assert pkd_layer_map(teacher, student, PKDConfig()) == expected


def test_pkd_last_and_explicit_layer_maps():
    last = PKDConfig(pkd_strategy="last")
    assert pkd_layer_map(12, 6, last) == [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]
    assert pkd_layer_map(6, 3, last) == [(1, 4), (2, 5)]
    explicit = PKDConfig(layer_map=[[1, 1], [2, 5], [3, 6]])
    assert pkd_layer_map(6, 3, explicit) == [(1, 1), (2, 5), (3, 6)]
    with pytest.raises(MethodConfigError, match="out of range"):
        pkd_layer_map(6, 3, PKDConfig(layer_map=[[4, 2]]))
    with pytest.raises(MethodConfigError, match="--pkd-strategy last"):
        pkd_layer_map(12, 5, PKDConfig())


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"temperature": 0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"beta": -1}, "beta"),
        ({"pkd_strategy": "middle"}, "pkd_strategy"),
        ({"layer_map": [[1, 2, 3]]}, "pairs"),
    ],
)
def test_invalid_distill_settings_name_the_fix(settings, message):
    with pytest.raises(MethodConfigError, match=message):
        PKDConfig(successor_layers=2, **settings).validate()


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_truncated_student_has_exactly_the_bottom_layers(model_type, tmp_path):
    predecessor = tiny_model(model_type, layers=4)
    before = copy.deepcopy(predecessor.state_dict())
    student = truncate(predecessor, 2)
    path = find_layers_path(student)
    assert len(student.get_submodule(path)) == 2 and student.config.num_hidden_layers == 2
    teacher_state, student_state = predecessor.state_dict(), student.state_dict()
    prefix = path + "."
    for name, value in student_state.items():
        if name.startswith(prefix):
            index = int(name[len(prefix) :].split(".")[0])
            assert index < 2
        assert torch.equal(value, teacher_state[name]), name  # same name, same weights
    dropped = {
        n for n in teacher_state if n.startswith(prefix + "2.") or n.startswith(prefix + "3.")
    }
    assert dropped and set(teacher_state) - set(student_state) == dropped
    assert all(torch.equal(v, predecessor.state_dict()[k]) for k, v in before.items())
    assert student.get_submodule(path)[0] is not predecessor.get_submodule(path)[0]

    batch = tiny_batch()
    with torch.no_grad():
        out = student(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == 3
    student.save_pretrained(tmp_path)
    reloaded = type(student).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, out.logits)


def test_truncating_to_an_impossible_depth_is_refused():
    with pytest.raises(MethodConfigError, match="between 1 and 4"):
        truncate(tiny_model("bert", layers=4), 5)


def _labelled(batch, num_labels=2):
    labels = torch.arange(batch["input_ids"].shape[0]) % num_labels
    return {**batch, "labels": labels}


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_distiller_with_the_teacher_as_student_leaves_only_the_task_loss(model_type):
    teacher = tiny_model(model_type, layers=4)
    student = copy.deepcopy(teacher)
    batch = _labelled(tiny_batch())
    config = PKDConfig(successor_layers=2, alpha=0.3, beta=100.0)
    pkd = Distiller(teacher, config, regression=False, layer_map=[(1, 1), (2, 2), (3, 3)])
    with torch.no_grad():
        task = student(**batch).loss
        assert pkd.loss(student, batch).item() == pytest.approx(0.7 * task.item(), rel=1e-5)
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_pkd_loss_trains_a_truncated_student_of_every_architecture(model_type):
    teacher = tiny_model(model_type, layers=4)
    student = truncate(teacher, 2)
    distiller = Distiller(
        teacher, PKDConfig(successor_layers=2), regression=False, layer_map=[(1, 2)]
    )
    loss = distiller.loss(student.train(), _labelled(tiny_batch()))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    layer = student.get_submodule(find_layers_path(student))[0]
    assert all(p.grad is not None for p in layer.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())


def test_theseus_kd_soft_term_vanishes_when_every_module_is_the_predecessor():
    predecessor = tiny_model("bert", layers=4)
    compound = copy.deepcopy(predecessor)
    config = TheseusKDConfig(successor_layers=2, alpha=0.5)
    batches = lambda: iter([_labelled(tiny_batch())])  # noqa: E731  (what auto measures)
    method = TheseusKDMethod(config, Distiller(predecessor, config, False), train_batches=batches)
    method.prepare(compound, total_steps=10)
    assert method.summary(compound)["successor_init"]["successor_init"] == "bottom"
    theseus_layers(compound).force([False, False])
    batch = _labelled(tiny_batch())
    with torch.no_grad():
        task = predecessor(**batch).loss
        assert method.loss(compound.train(), batch).item() == pytest.approx(0.5 * task.item())
        theseus_layers(compound).force([True, True])
        assert method.loss(compound, batch).item() > 0.5 * task.item()


def _pretrained_folder(tmp_path, seed=5, **config):
    """A tiny pre-trained encoder without a task head, saved like a Hub checkpoint."""
    encoder = tiny_model("bert", seed=seed, layers=4, **config).bert
    encoder.save_pretrained(tmp_path / "pretrained")
    return str(tmp_path / "pretrained")


def _build(method, predecessor, config, seed):
    """The model and loop method the registry builds for `method` (its one stage)."""
    context = MethodContext(predecessor, seed, get_task("sst2"))
    (stage,) = get_method(method).stages(config, context)
    return stage.start(predecessor)


@pytest.mark.parametrize("method", ["truncated", "kd", "pkd"])
def test_student_from_starts_the_baseline_at_the_pretrained_bottom_layers(method, tmp_path):
    pretrained = _pretrained_folder(tmp_path)
    predecessor = tiny_model("bert", layers=4)
    predecessor.config.id2label = {0: "negative", 1: "positive"}
    predecessor.config.label2id = {"negative": 0, "positive": 1}
    config = get_method(method).make_config({"successor_layers": 2, "student_from": pretrained})

    student, plugin = _build(method, predecessor, config, 3)
    source = AutoModel.from_pretrained(pretrained).state_dict()
    state = student.state_dict()
    kept = [n for n in source if not n.startswith("encoder.layer.") or n.split(".")[2] in "01"]
    assert all(torch.equal(state["bert." + n], source[n]) for n in kept)
    assert not any(n.startswith("bert.encoder.layer.2.") for n in state)
    assert student.config.num_hidden_layers == 2
    assert student.config.id2label == predecessor.config.id2label
    # The head is new, not the predecessor's, and drawn from the run's seed.
    assert not torch.equal(state["classifier.weight"], predecessor.classifier.weight)
    again, _ = _build(method, predecessor, config, 3)
    other, _ = _build(method, predecessor, config, 4)
    assert torch.equal(again.classifier.weight, student.classifier.weight)
    assert not torch.equal(other.classifier.weight, student.classifier.weight)
    if method != "truncated":  # the teacher is still the fine-tuned predecessor
        assert plugin.distiller.teacher is predecessor


@pytest.mark.parametrize("method", ["theseus", "theseus-kd", "truncated", "kd", "pkd"])
def test_run_settings_record_the_method_and_every_field_of_its_config(method):
    spec = get_method(method)
    config = spec.make_config({"successor_layers": 2})
    settings = method_settings("m", DataConfig(task="sst2"), spec, config)
    assert settings["method"] == method
    # Every field that decides what the run computes; speed-only ones (the teacher cache)
    # are no part of a run's identity.
    recorded = {k: v for k, v in asdict(config).items() if k != "teacher_cache"}
    assert settings["config"] == json.loads(json.dumps(recorded))
    fields = set(settings["config"])
    assert ("student_from" in fields) == (method in ("truncated", "kd", "pkd"))
    assert ("temperature" in fields) == (method in ("theseus-kd", "kd", "pkd"))
    assert ("scheduler" in fields) == method.startswith("theseus")
    assert list(methods())[:5] == ["theseus", "theseus-kd", "truncated", "kd", "pkd"]


def test_student_from_of_another_shape_is_refused_naming_the_fix(tmp_path):
    pretrained = _pretrained_folder(tmp_path, num_labels=2)
    predecessor = tiny_model("roberta", layers=4)
    config = KDConfig(successor_layers=2, student_from=pretrained)
    with pytest.raises(ModelError, match="model_type bert.*model_type roberta.*fine-tuned from"):
        get_method("kd").check(config, MethodContext(predecessor))
    with pytest.raises(ModelError, match="model_type bert.*model_type roberta.*fine-tuned from"):
        _build("kd", predecessor, config, 1)
    assert TruncatedConfig(successor_layers=2).student_from is None
