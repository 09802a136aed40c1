"""Learning from a frozen teacher: the soft-target settings and the distillation loss that
KD, BERT-PKD and Theseus + KD share (and later methods reuse)."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from transformers import PreTrainedModel

from .losses import patient_loss, soft_target_loss, task_loss


class SoftTargetSettings(Protocol):
    """What the distiller reads of its settings: a method's config holding
    `methods.distillation.SoftTargets` (which sits above this module, with the methods)."""

    temperature: float
    alpha: float
    teacher_cache: bool

    def validate(self) -> None: ...


class FrozenTeacher:
    """A model that teaches and never learns: eval mode (dropout off), no parameter that
    trains, run without gradients on the device of the inputs it is given (moved there on
    its first call: the loop decides the device after a method is built).

    >>> frozen = FrozenTeacher(predecessor)
    >>> logits = frozen(batch).logits
    """

    def __init__(self, model: PreTrainedModel):
        self.model = model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)

    def __call__(self, batch: dict[str, torch.Tensor], **options):
        """The teacher's outputs on `batch` (its labels left out); `options` go to the model
        (`output_hidden_states=True`)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        device = inputs["input_ids"].device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        with torch.no_grad():
            return self.model(**inputs, **options)


class Distiller:
    """The student's loss against a frozen teacher:
    (1 - alpha) * task loss + alpha * soft-target loss [+ beta * patient loss].

    `config` holds `temperature` and `alpha` (and `beta` where a layer map is given).

    >>> distiller = Distiller(teacher, KDConfig(successor_layers=3), regression=False)
    >>> loss = distiller.loss(student, batch)
    """

    def __init__(
        self,
        teacher: PreTrainedModel,
        config: SoftTargetSettings,
        regression: bool,
        layer_map: list[tuple[int, int]] | None = None,
    ):
        config.validate()
        self.teacher, self.frozen = teacher, FrozenTeacher(teacher)
        self.config, self.regression, self.layer_map = config, regression, layer_map or []
        self.cache: TeacherCache | None = None  # sized by cache_examples
        self.teacher_batches = 0  # batches the teacher ran on (in this process, this stage)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], examples: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`examples`: the batch's indices in the training set, which the teacher cache (when
        on and sized by `cache_examples`) keys its entries by."""
        states = bool(self.layer_map)
        output = model(**batch, output_hidden_states=states)
        logits, teacher_states = self._teacher(batch, examples)
        config = self.config
        soft = soft_target_loss(output.logits, logits, config.temperature, self.regression)
        # Rows without a label (unlabelled texts) reach the soft targets, not the task loss.
        task = task_loss(output, batch["labels"], self.regression)
        loss = (1 - config.alpha) * task + config.alpha * soft
        if states:
            pkd = patient_loss(output.hidden_states, teacher_states, self.layer_map)
            loss = loss + config.beta * pkd
        return loss

    def _teacher(self, batch, examples):
        """The teacher's logits, and its hidden states (by layer) where a layer map needs them:
        from the cache when every example of the batch is in it, else computed (and kept)."""
        cache = self.cache if examples is not None else None
        if cache is not None and cache.has(examples):
            return cache.get(examples, batch["input_ids"].device)
        states = bool(self.layer_map)
        teacher = self.frozen(batch, output_hidden_states=states)
        hidden = teacher.hidden_states if states else None
        self.teacher_batches += 1
        if cache is not None:
            cache.put(examples, teacher.logits, hidden)
        return teacher.logits, hidden

    def cache_examples(self, count: int | None) -> None:
        """A fresh teacher cache for a training set of `count` examples, when it is on (None,
        outside the loop: no cache). Off under several processes: each sees other batches
        every epoch, so a whole batch would rarely be cached, and the processes' caches
        would differ where a checkpoint keeps one."""
        from accelerate import PartialState

        if count is None or not self.config.teacher_cache or PartialState().num_processes > 1:
            self.cache = None
        else:
            self.cache = TeacherCache(count, sorted({t for _, t in self.layer_map}))

    def cache_states(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps of the cache (nothing when it is off)."""
        return self.cache.state() if self.cache is not None else {}

    def load_cache_states(self, states: dict[str, torch.Tensor]) -> None:
        """Put back what `cache_states` saved; a checkpoint saved with the cache off, or by
        a run before the cache existed, leaves it empty (it refills as it trains)."""
        if self.cache is not None and "teacher_cache.filled" in states:
            self.cache.load(states)

    def summary(self) -> dict:
        """The cache's size and how often the teacher still ran, for metrics.json."""
        if self.cache is None:
            return {}
        return {"teacher_cache": {"bytes": self.cache.nbytes(), "examples": len(self.cache),
                                  "teacher_batches": self.teacher_batches}}  # fmt: skip


class DistillerHooks:
    """The training loop's hooks for a method that learns through a `Distiller` (its
    `distiller`): the teacher cache sized for the training set, kept in checkpoints, and
    reported. Listed before the loop's `Method` class (or a subclass) in the bases."""

    distiller: Distiller

    def prepare(self, model, total_steps: int) -> None:
        super().prepare(model, total_steps)
        self.distiller.cache_examples(self.training_examples)

    def cache_states(self) -> dict[str, torch.Tensor]:
        return self.distiller.cache_states()

    def set_cache_states(self, states: dict[str, torch.Tensor]) -> None:
        self.distiller.load_cache_states(states)

    def summary(self, model) -> dict:
        return {**super().summary(model), **self.distiller.summary()}


class TeacherCache:
    """The frozen teacher's outputs per training example: its logits and, for the patient
    loss, the [CLS] states of the mapped layers (what that loss reads of them), in fp32.

    Filled from the training batches themselves, so in the first epoch every loss is the
    one recomputation gives, bit for bit; later epochs read what the first stored. An
    example's outputs change with what it is batched with by rounding only (how much:
    docs/methods/kd.md, the teacher cache).
    """

    def __init__(self, count: int, layers: list[int]):
        self.layers = layers
        self.filled = torch.zeros(count, dtype=torch.bool)
        self.logits: torch.Tensor | None = None  # allocated on the first put (label count)
        self.states: torch.Tensor | None = None  # [count, layers, hidden]

    def __len__(self) -> int:
        return len(self.filled)

    def has(self, examples: torch.Tensor) -> bool:
        return bool(self.filled[examples.cpu()].all())

    def put(self, examples, logits: torch.Tensor, hidden) -> None:
        rows = examples.cpu()
        if self.logits is None:
            self.logits = torch.zeros(len(self), logits.shape[-1], dtype=torch.float32)
        self.logits[rows] = logits.detach().float().cpu()
        if self.layers:
            cls = torch.stack([hidden[layer][:, 0] for layer in self.layers], dim=1)
            if self.states is None:
                self.states = torch.zeros(len(self), *cls.shape[1:], dtype=torch.float32)
            self.states[rows] = cls.detach().float().cpu()
        self.filled[rows] = True

    def get(self, examples, device):
        """(logits, hidden states) as the teacher gives them: the states as a tuple indexed by
        layer, holding only the mapped layers' [CLS] position (all the patient loss reads)."""
        rows = examples.cpu()
        logits = self.logits[rows].to(device)
        if not self.layers:
            return logits, None
        cls = self.states[rows].to(device)
        hidden = [None] * (max(self.layers) + 1)
        for position, layer in enumerate(self.layers):
            hidden[layer] = cls[:, position].unsqueeze(1)  # [batch, 1, hidden]: position 0
        return logits, tuple(hidden)

    def nbytes(self) -> int:
        parts = [t for t in (self.filled, self.logits, self.states) if t is not None]
        return sum(t.numel() * t.element_size() for t in parts)

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps of it."""
        saved = {"teacher_cache.filled": self.filled}
        if self.logits is not None:
            saved["teacher_cache.logits"] = self.logits
        if self.states is not None:
            saved["teacher_cache.states"] = self.states
        return saved

    def load(self, saved: dict[str, torch.Tensor]) -> None:
        self.filled = saved["teacher_cache.filled"].clone()
        self.logits = saved.get("teacher_cache.logits")
        self.states = saved.get("teacher_cache.states")
