"""One frozen-teacher component for every method with a teacher, and the teacher cache's own
checkpoint hook (apart from the generators')."""

from __future__ import annotations

import torch
from tiny import tiny_batch, tiny_model

from bert_theseus.methods.dynabert.method import DynaBERTMethod
from bert_theseus.methods.kd import KDConfig
from bert_theseus.methods.kd.method import KDMethod
from bert_theseus.methods.truncated import truncate
from bert_theseus.teacher import Distiller, FrozenTeacher


def test_a_frozen_teacher_is_in_eval_mode_trains_nothing_and_records_no_graph():
    model = tiny_model("bert", layers=2, dropout=0.1).train()
    frozen = FrozenTeacher(model)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    batch = {**tiny_batch(3), "labels": torch.tensor([0, 1, 1])}
    output = frozen(batch, output_hidden_states=True)
    assert output.loss is None  # the labels stay out: a teacher has no task loss
    assert output.logits.grad_fn is None and len(output.hidden_states) == 3
    again = frozen(batch)  # dropout off: the same logits every call
    assert torch.equal(output.logits, again.logits)


def test_every_method_with_a_teacher_freezes_it_through_the_component():
    teacher = tiny_model("bert", layers=4)
    distiller = Distiller(teacher, KDConfig(successor_layers=2), regression=False)
    assert isinstance(distiller.frozen, FrozenTeacher) and distiller.frozen.model is teacher
    other = tiny_model("bert", layers=4)
    dynabert = DynaBERTMethod(tiny_model("bert", layers=4), [(1.0, 1.0), (0.5, 1.0)], other)
    assert isinstance(dynabert.frozen, FrozenTeacher) and dynabert.frozen.model is other
    assert not any(p.requires_grad for p in [*teacher.parameters(), *other.parameters()])
    assert DynaBERTMethod(tiny_model("bert", layers=4), [(1.0, 1.0)]).frozen is None


def test_the_teacher_cache_is_saved_by_its_own_hook_not_with_the_generators():
    teacher = tiny_model("bert", layers=4)
    method = KDMethod(Distiller(teacher, KDConfig(successor_layers=2), regression=False))
    method.training_examples = 6
    student = truncate(teacher, 2)
    method.prepare(student, total_steps=1)
    method.batch_examples = torch.tensor([0, 2, 5])
    method.loss(student, {**tiny_batch(3), "labels": torch.tensor([0, 1, 1])})
    assert method.generator_states() == {}
    saved = method.cache_states()
    assert sorted(saved) == ["teacher_cache.filled", "teacher_cache.logits"]
    assert saved["teacher_cache.filled"].tolist() == [True, False, True, False, False, True]
    fresh = KDMethod(Distiller(teacher, KDConfig(successor_layers=2), regression=False))
    fresh.training_examples = 6
    fresh.prepare(truncate(teacher, 2), total_steps=1)
    fresh.set_cache_states({"draws": torch.zeros(1), **saved})  # every saved tensor is given
    assert torch.equal(fresh.distiller.cache.logits, saved["teacher_cache.logits"])
