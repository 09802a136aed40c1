"""RefBERT's student (reconstructed): a classifier whose first layer also attends to the stored
predecessor states of its input's reference.

The student is any classifier the toolkit builds (by default the predecessor's bottom layers);
`ReferenceStudent` holds it whole under `student`, adds the learned projection of the stored
states into the student's width, and takes over the forward of its first layer's attention:
queries come from the input only, keys and values from the input followed by the projected
reference states. The output keeps the input's length, so the layers above are untouched.
Without references the model runs the student's own code: it is the plain student.

>>> import bert_theseus  # registers the class with the Auto classes
>>> model = AutoModelForSequenceClassification.from_pretrained("runs/refbert")
>>> model(**tokenizer(["a fine film"], return_tensors="pt")).logits  # retrieves by itself
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import field
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from ...arch import model_type_of
from ...compact import layout_for
from .references import FILES, FOLDER, References

MODEL_TYPE = "bert-theseus-refbert"
MODES = ("nearest", "zero", "random")
# Attention modules that return (output,) rather than (output, weights).
SINGLE_OUTPUT = ("mpnet",)
NOT_FORWARDED = ("architectures", "transformers_version", "auto_map")


class ReferencesMissingError(OSError):
    """A saved RefBERT model whose references/ folder is absent."""


@strict(accept_kwargs=True)
class ReferenceStudentConfig(PretrainedConfig):
    """The student's own config (as a dict) and how references reach it."""

    model_type = MODEL_TYPE

    student: dict = field(default_factory=dict, metadata={"help": "the student's config.json"})
    reference_width: int = field(default=0, metadata={"help": "width of the stored states"})
    reference_states: str = field(default="tokens", metadata={"help": "tokens or cls"})
    reference_mode: str = field(
        default="nearest",
        metadata={"help": "nearest (RefBERT), zero or random (its ablations)"},
    )

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.student:  # what tools read off a classifier's config (speed, benchmark)
            inner = self.student_config()
            self.num_hidden_layers = inner.num_hidden_layers
            for name in ("vocab_size", "max_position_embeddings", "hidden_size", "pad_token_id"):
                if getattr(inner, name, None) is not None:
                    setattr(self, name, getattr(inner, name))

    def student_config(self) -> PretrainedConfig:
        values = {k: v for k, v in self.student.items() if k not in NOT_FORWARDED}
        return AutoConfig.for_model(values.pop("model_type"), **values)


class ReferenceStudent(PreTrainedModel):
    """The student plus references; see the module docstring."""

    config_class = ReferenceStudentConfig
    base_model_prefix = "refbert"  # no such child: `base_model` is the model itself
    _supports_sdpa = True
    _supports_attention_backend = True

    def __init__(self, config: ReferenceStudentConfig):
        super().__init__(config)
        if config.reference_mode not in MODES:
            raise ValueError(
                f"reference_mode '{config.reference_mode}' is not one of {', '.join(MODES)}"
            )
        inner = config.student_config()
        self.student = _student(inner, config._attn_implementation)
        self.reference_projection = nn.Linear(config.reference_width, inner.hidden_size)
        self.attention = ReferenceAttention.install(self.student)
        self.references: References | None = None
        self.post_init()

    @classmethod
    def wrap(cls, student: PreTrainedModel, references: References, mode: str = "nearest"):
        """A RefBERT model around a copy of `student`'s weights, the projection starting as
        the identity where the stored states have the student's width."""
        values = {k: v for k, v in student.config.to_dict().items() if k not in NOT_FORWARDED}
        labels = {k: getattr(student.config, k) for k in ("id2label", "label2id", "problem_type")}
        config = ReferenceStudentConfig(
            student=values,
            reference_width=references.width,
            reference_states=references.kind,
            reference_mode=mode,
            **labels,
        )
        model = cls(config)
        model.student.load_state_dict(student.state_dict())
        model.references = references
        return model.to(next(student.parameters()).device)

    def _init_weights(self, module: nn.Module) -> None:
        if module is self.reference_projection:
            with torch.no_grad():
                if module.in_features == module.out_features:
                    module.weight.copy_(torch.eye(module.in_features))
                else:
                    std = getattr(self.student.config, "initializer_range", 0.02)
                    module.weight.normal_(0.0, std)
                module.bias.zero_()
        elif module is not self:
            self.student._init_weights(module)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        reference_states: torch.Tensor | None = None,
        reference_mask: torch.Tensor | None = None,
        **kwargs,
    ):
        """The student's outputs. References are retrieved from the stored ones unless given
        (`reference_states` [batch, m, width] and `reference_mask` [batch, m], as the ONNX
        export takes them); with neither, this is the plain student."""
        if reference_states is None and self.references is not None and input_ids is not None:
            reference_states, reference_mask = self.retrieve(input_ids, attention_mask)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if token_type_ids is not None:  # MPNet and DistilBERT take none
            inputs["token_type_ids"] = token_type_ids
        if reference_states is None:
            return self.student(**inputs, **kwargs)
        if reference_mask is None:
            reference_mask = torch.ones(reference_states.shape[:2], dtype=torch.long,
                                        device=reference_states.device)  # fmt: skip
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        weight = self.reference_projection.weight
        projected = self.reference_projection(reference_states.to(weight.dtype))
        with self.attention.attending(projected, reference_mask, attention_mask):
            return self.student(**inputs, **kwargs)

    def picks(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        """The training example each input references (-1: none), by this model's mode."""
        return picks(self.references, self.config.reference_mode, input_ids, attention_mask)

    def retrieve(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        return retrieve(self.references, self.config.reference_mode, input_ids, attention_mask)

    def export_inputs(self, batch: dict) -> dict[str, torch.Tensor]:
        """The reference inputs of `batch` for an exported graph, which takes them as inputs
        (`theseus export`); empty for a model without references."""
        if self.references is None:
            return {}
        states, mask = self.retrieve(batch["input_ids"], batch.get("attention_mask"))
        return {"reference_states": states, "reference_mask": mask}

    def share_export_state(self, copy: ReferenceStudent) -> None:
        """Give a re-loaded copy of this model (export traces one with eager attention) the
        same stored references."""
        copy.references = self.references

    def export_files(self, folder: Path) -> None:
        """The stored references, beside an export: retrieval runs outside the graph."""
        if self.references is not None:
            self.references.save(Path(folder))

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.references is not None:
            self.references.save(Path(save_directory))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model.references = load_references(str(pretrained_model_name_or_path), kwargs)
        return model


def _student(config: PretrainedConfig, attention: str | None) -> PreTrainedModel:
    """The student, with the attention implementation asked of the wrapper (eager for an
    export whose attention ONNX Runtime should fuse) where its architecture has it."""
    if attention:
        try:  # a copy: a refused attempt leaves its choice in the config
            return AutoModelForSequenceClassification.from_config(
                copy.deepcopy(config), attn_implementation=attention
            )
        except ValueError:  # MPNet has no sdpa, say: its own default
            pass
    return AutoModelForSequenceClassification.from_config(config)


def picks(references: References, mode: str, input_ids, attention_mask=None) -> np.ndarray:
    """The training example each input references (-1: none): the nearest non-identical
    one, or for the random ablation a drawn one."""
    input_ids = torch.as_tensor(input_ids).cpu()
    mask = torch.ones_like(input_ids) if attention_mask is None else torch.as_tensor(attention_mask)
    sequences = [ids[keep.bool()].tolist() for ids, keep in zip(input_ids, mask.cpu(),
                                                                strict=True)]  # fmt: skip
    if mode == "random":
        return references.index.random(sequences)
    return references.index.nearest(sequences)[0]


def retrieve(references: References, mode: str, input_ids, attention_mask=None):
    """(reference_states [batch, m, width], reference_mask [batch, m]) for a batch, as the
    model and its ONNX export take them."""
    device = input_ids.device if isinstance(input_ids, torch.Tensor) else None
    states, mask = references.gather(picks(references, mode, input_ids, attention_mask), device)
    if mode == "zero":  # the same shape and mask, no content
        states = torch.zeros_like(states)
    return states, mask


def load_references(name: str, kwargs: dict) -> References:
    """The references saved beside a model: a folder's, or a Hub repository's (downloaded)."""
    root = Path(name).expanduser() / kwargs.get("subfolder", "")
    local = root / FOLDER
    if root.is_dir():
        paths = {f: local / f for f in FILES if (local / f).is_file()}
    else:
        from transformers.utils import cached_file

        passed = ("revision", "token", "cache_dir", "local_files_only", "force_download")
        hub = {k: kwargs[k] for k in passed if k in kwargs}
        within = f"{kwargs['subfolder']}/{FOLDER}" if kwargs.get("subfolder") else FOLDER
        paths = {}
        for f in FILES:
            found = cached_file(name, f, subfolder=within,
                                _raise_exceptions_for_missing_entries=False, **hub)  # fmt: skip
            if found is not None:
                paths[f] = Path(found)
    missing = [f for f in FILES if f not in paths]
    if missing:
        raise ReferencesMissingError(
            f"RefBERT model '{name}' lacks {FOLDER}/{', '.join(missing)}: its stored references "
            "are part of the model; copy the whole folder that compress wrote"
        )
    return References.load(paths)


class ReferenceAttention:
    """The forward of the student's first attention module. Outside `attending` it is the
    module's own forward; inside, keys and values also cover the reference states.

    Built from the compact-model layer table (query, key, value and, where the module holds
    it, the output projection), so it fits every architecture in that table. Position biases
    (MPNet's) apply to input-input scores only: a reference has no position relative to the
    input. Padding of input and reference gets zero weight.
    """

    def __init__(self, module: nn.Module, model_type: str):
        layout = layout_for(model_type)
        inside = len(layout.attention) + 1
        self.module, self.original = module, type(module).forward
        self.linears = [path[inside:] for path in layout.head_linears()]
        output = layout.attention_output
        self.output = output[inside:] if output.startswith(layout.attention + ".") else None
        self.heads = layout.head_count[0]
        self.bias = layout.shared_head_input
        self.single = model_type in SINGLE_OUTPUT
        self.current: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.probabilities: torch.Tensor | None = None

    @classmethod
    def install(cls, model: PreTrainedModel) -> ReferenceAttention:
        model_type = model_type_of(model.config)
        layout = layout_for(model_type)
        first = model.base_model.get_submodule(layout.layers)[0]
        module = first.get_submodule(layout.attention)
        attention = cls(module, model_type)
        module.forward = attention  # an instance attribute: not in the state dict
        return attention

    @contextmanager
    def attending(self, states: torch.Tensor, mask: torch.Tensor, input_mask: torch.Tensor):
        self.current = (states, mask, input_mask)
        try:
            yield
        finally:
            self.current = None

    def __call__(self, *args, **kwargs):
        if self.current is None:
            return self.original(self.module, *args, **kwargs)
        hidden = args[0] if args else kwargs["hidden_states"]
        bias = None
        if self.bias is not None:
            name, position = self.bias
            bias = args[position] if len(args) > position else kwargs.get(name)
        output = self.attend(hidden, bias)
        if not self.single:
            return output, self.probabilities
        # MPNet's layer reads attention weights back only when asked for them.
        wanted = kwargs.get("output_attentions", len(args) > 3 and bool(args[3]))
        return (output, self.probabilities) if wanted else (output,)

    def attend(self, hidden: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        states, reference_mask, input_mask = self.current
        query, key, value = (self.module.get_submodule(path) for path in self.linears)
        both = torch.cat([hidden, states.to(hidden.dtype)], dim=1)
        q, k, v = query(hidden), key(both), value(both)
        batch, length, _ = q.shape
        heads = getattr(self.module, self.heads)
        size = q.shape[-1] // heads
        q = q.view(batch, length, heads, size).transpose(1, 2)
        k = k.view(batch, k.shape[1], heads, size).transpose(1, 2)
        v = v.view(batch, v.shape[1], heads, size).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / size**0.5
        if bias is not None:  # input-input positions only
            scores = scores + nn.functional.pad(bias, (0, k.shape[2] - length))
        keep = torch.cat([input_mask, reference_mask.to(input_mask.device)], dim=1).bool()
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        probabilities = scores.softmax(dim=-1)
        self.probabilities = probabilities.detach()  # the last call's, for tests and MPNet
        dropout = getattr(self.module, "dropout", None)
        if isinstance(dropout, nn.Dropout):
            probabilities = dropout(probabilities)
        output = (probabilities @ v).transpose(1, 2).reshape(batch, length, heads * size)
        if self.output is not None:
            output = self.module.get_submodule(self.output)(output)
        return output


def register() -> None:
    AutoConfig.register(MODEL_TYPE, ReferenceStudentConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(
        ReferenceStudentConfig, ReferenceStudent, exist_ok=True
    )
