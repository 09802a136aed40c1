"""A sentence-transformers model as a model of the shared training loop.

`SentenceEncoder` holds the transformer (`backbone`, a plain Hugging Face encoder) and the
modules sentence-transformers runs after it (`head`: pooling, dense layers,
normalisation), and computes the sentence embedding with those modules' own code. Its
output is the embedding as `logits` and, given the teacher's embeddings as `labels`, their
MSE as `loss`: so the methods that cut, replace or distil layers (through `config`,
`base_model` and the layer list under `backbone`) train it unchanged. Given a second
sentence (`pair_*` inputs) its `logits` are the two embeddings' cosine, which is what an
STS evaluation scores, and given the pairs' gold scores its `loss` is sentence-transformers'
CoSENT loss of those cosines (a task loss on scored pairs, as a classifier's dev batches have
one: DynaBERT's importance is its gradient).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .config import EmbeddingError

PAIR = "pair_"  # prefix of the second sentence's inputs in an evaluation batch


@dataclass
class EmbeddingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class SentenceEncoder(nn.Module):
    """A `SentenceTransformer` whose first module is a Hugging Face transformer.

    >>> encoder = SentenceEncoder(SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2"))
    >>> encoder(**tokenizer(["a sentence"], return_tensors="pt")).logits   # its embedding
    >>> encoder.save_pretrained("out")   # SentenceTransformer("out") loads it
    """

    base_model_prefix = "backbone"

    def __init__(self, model):
        super().__init__()
        first = model[0]
        if not hasattr(first, "auto_model"):
            raise EmbeddingError(
                f"the first module of this sentence-transformers model is a "
                f"{type(first).__name__}, not a Transformer: --embedding compresses "
                "transformer encoders"
            )
        self.backbone = first.auto_model
        self.head = nn.ModuleList(list(model)[1:])
        # The SentenceTransformer itself, outside the registered modules (its transformer is
        # `backbone`, its other modules `head`): saving goes through it, so its prompts,
        # similarity function and module layout are kept.
        self.__dict__["sentence_transformer"] = model

    @property
    def config(self):
        return self.backbone.config

    @property
    def base_model(self) -> nn.Module:
        return self.backbone

    @property
    def tokenizer(self):
        return self.sentence_transformer.tokenizer

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        pair_input_ids: torch.Tensor | None = None,
        pair_attention_mask: torch.Tensor | None = None,
        pair_token_type_ids: torch.Tensor | None = None,
    ) -> EmbeddingOutput:
        embedding, hidden = self.embed(
            input_ids, attention_mask, token_type_ids, output_hidden_states
        )
        if pair_input_ids is not None:
            other, _ = self.embed(pair_input_ids, pair_attention_mask, pair_token_type_ids)
            cosine = F.cosine_similarity(embedding.float(), other.float(), dim=-1)
            loss = self.pair_loss(embedding, other, labels) if labels is not None else None
            return EmbeddingOutput(loss=loss, logits=cosine[:, None], hidden_states=hidden)
        loss = None
        if labels is not None and labels.dim() == 2:  # the teacher's embeddings
            loss = F.mse_loss(embedding.float(), labels.float())
        return EmbeddingOutput(loss=loss, logits=embedding, hidden_states=hidden)

    def pair_loss(self, first, second, scores: torch.Tensor) -> torch.Tensor:
        """sentence-transformers' CoSENT loss of the pairs' cosines against their gold scores:
        it reads only the scores' order, so any scale (0-5, 0-1) gives the same loss, and it is
        not zero at the predecessor (unlike the MSE to its own embeddings)."""
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss

        loss = CoSENTLoss(self.sentence_transformer)
        return loss.compute_loss_from_embeddings([first, second], scores.float())

    def embed(self, input_ids, attention_mask=None, token_type_ids=None, hidden=False):
        """The sentence embedding (and the transformer's hidden states when `hidden`)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        out = self.backbone(**inputs, output_hidden_states=hidden, return_dict=True)
        embedding = self.sentence_embedding(input_ids, attention_mask, out.last_hidden_state)
        return embedding, out.hidden_states

    def sentence_embedding(self, input_ids, attention_mask, token_embeddings) -> torch.Tensor:
        """sentence-transformers' modules after the transformer (pooling, dense layers,
        normalisation) on its token states: from this model, or from an exported graph."""
        features = {"input_ids": input_ids, "attention_mask": attention_mask,
                    "token_embeddings": token_embeddings}  # fmt: skip
        for module in self.head:
            features = module(features)
        return features["sentence_embedding"]

    def with_backbone(self, backbone: nn.Module) -> SentenceEncoder:
        """A copy of this encoder around `backbone` (its transformer cut to fewer heads or
        layers, say): the pooling, dense and normalisation modules, prompts and settings
        copied, this encoder left unchanged. A compact backbone is saved as its own model
        type, which `SentenceTransformer(folder)` loads after `import bert_theseus`."""
        # The memo puts `backbone` where the old transformer was, which is never copied.
        model = copy.deepcopy(self.sentence_transformer, {id(self.backbone): backbone})
        return SentenceEncoder(model)

    def save_pretrained(self, folder, **_) -> None:
        """Save as a sentence-transformers folder (the card is the run's own)."""
        self.sentence_transformer.save(str(folder), create_model_card=False)


def load_encoder(name: str, trust_remote_code: bool = False) -> SentenceEncoder:
    """The sentence-transformers model `name` (folder or Hub id) as a `SentenceEncoder`;
    a model without modules.json is refused (sentence-transformers would invent a mean
    pooling for it, which is not the model the user deploys)."""
    _check_modules(name)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(name, device="cpu", trust_remote_code=trust_remote_code)
    except Exception as error:
        raise EmbeddingError(
            f"sentence-transformers cannot load {name} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): pass a sentence-transformers "
            "folder or Hub id"
        ) from None
    return SentenceEncoder(model)


def _check_modules(name: str) -> None:
    path = Path(name)
    if path.exists():
        if not (path / "modules.json").is_file():
            raise EmbeddingError(
                f"{name} is not a sentence-transformers model (no modules.json): pass a "
                "sentence-transformers folder, or leave out --embedding to compress a classifier"
            )
        return
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(name, "modules.json")
    except Exception as error:
        raise EmbeddingError(
            f"{name} is neither a folder nor a sentence-transformers model on the Hub "
            f"({type(error).__name__}): pass a sentence-transformers folder or Hub id"
        ) from None


def check_installed() -> None:
    """One line where the sentence-transformers extra is missing."""
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise EmbeddingError(
            "--embedding needs sentence-transformers: pip install 'bert-theseus[embedding]'"
        ) from None
