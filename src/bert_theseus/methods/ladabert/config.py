"""Configuration of LadaBERT: the parameter budget, the compression schedule, the KD weights."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..distillation import LayerwiseWeights
from ..registry import MethodConfigError

# Table 2 of the paper, as compression factors (x) of the embeddings, the SVD and the pruning;
# the kept fractions P are their inverses. The overall factors are x2.5, x5, x7.5 and x10.
PRESETS: dict[str, tuple[float, float, float]] = {
    "ladabert-1": (1.43, 2.0, 1.56),
    "ladabert-2": (2.05, 2.0, 3.41),
    "ladabert-3": (5.0, 2.0, 4.33),
    "ladabert-4": (5.0, 2.5, 5.45),
}

# How an encoder matrix is factorised, and how a factor's entries are ranked for pruning: by
# the weights alone (the paper) or with the inputs they see (calibration.py).
SVD_KINDS = ("weight", "activation")
PRUNING_KINDS = ("weight", "activation")


@dataclass
class LadaBERTConfig(LayerwiseWeights):
    """What LadaBERT keeps, in how many steps, and how it recovers after each.

    The kept fractions are the paper's P_embd, P_svd and P_weight (Mao et al., COLING 2020,
    Eq. 1-7); a preset sets all three from Table 2, and any given alone overrides it:

    >>> LadaBERTConfig(preset="ladabert-2").kept()  # (P_embd, P_svd, P_weight)
    (0.4878..., 0.5, 0.2932...)
    >>> LadaBERTConfig(p_embd=1.0, p_svd=0.5, p_weight=1.0)  # SVD of the encoder only
    """

    preset: str = field(
        default="ladabert-1",
        metadata={
            "help": f"Table 2's budgets: {', '.join(PRESETS)} (x2.5, x5, x7.5, x10 fewer "
            "parameters on BERT-base); --p-embd/--p-svd/--p-weight override its parts"
        },
    )
    p_embd: float | None = field(
        default=None,
        metadata={
            "help": "P_embd: kept fraction of the word-embedding table, by truncated SVD "
            "(1: untouched)"
        },
    )
    p_svd: float | None = field(
        default=None,
        metadata={
            "help": "P_svd: kept fraction of every encoder weight matrix after its truncated "
            "SVD, rank r = m n P_svd / (m + n) (1: not factorised)"
        },
    )
    p_weight: float | None = field(
        default=None,
        metadata={
            "help": "P_weight: kept fraction of each factor after magnitude pruning (1: none)"
        },
    )
    svd: str = field(
        default="activation",
        metadata={
            "help": "how each encoder matrix is factorised: 'activation' (the factors best for "
            "the inputs the matrix sees on --calibration-examples training examples) or "
            "'weight' (the paper: truncated SVD of the weights, which on sentence-embedding "
            "predecessors can start as a constant; docs/results.md section 8)"
        },
    )
    pruning: str = field(
        default="weight",
        metadata={
            "help": "how each pruning step ranks a factor's entries: 'weight' (the paper: |w|) "
            "or 'activation' (|w| times the root mean square of the input feature it "
            "multiplies, on --calibration-examples training examples, measured on the student "
            "as the step starts)"
        },
    )
    calibration_examples: int = field(
        default=256,
        metadata={
            "help": "training examples (file order) whose inputs --svd activation and "
            "--pruning activation read"
        },
    )
    prune_iterations: int = field(
        default=3,
        metadata={
            "help": "pruning steps after the SVD, each followed by recovery: the kept fraction "
            "goes 1 -> P_weight^(1/n) -> ... -> P_weight (the paper does not give n)"
        },
    )
    compress_share: float = field(
        default=0.5,
        metadata={
            "help": "share of the training budget spent on the SVD and pruning iterations "
            "(split evenly); the rest recovers at the final size"
        },
    )
    logit_weight: float = field(
        default=1.0,
        metadata={
            "help": "weight of the soft cross-entropy to the teacher's logits at T = 1 (as KL, "
            "zero when they agree; regression: MSE)"
        },
    )
    label_weight: float = field(
        default=0.0,
        metadata={"help": "weight of the task loss on the labels (the paper has none: 0)"},
    )

    def kept(self) -> tuple[float, float, float]:
        """(P_embd, P_svd, P_weight): the preset's, overridden by any given alone."""
        factors = PRESETS[self.preset]
        preset = tuple(1.0 / factor for factor in factors)
        given = (self.p_embd, self.p_svd, self.p_weight)
        return tuple(p if p is not None else q for p, q in zip(given, preset, strict=True))

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise MethodConfigError(
                f"preset '{self.preset}' is not one of {', '.join(PRESETS)}: pick one, or set "
                "--p-embd, --p-svd and --p-weight"
            )
        for name, value in zip(("p_embd", "p_svd", "p_weight"), self.kept(), strict=True):
            if not 0.0 < value <= 1.0:
                flag = name.replace("_", "-")
                raise MethodConfigError(
                    f"{name} {value} must be a kept fraction in (0, 1], e.g. --{flag} 0.5"
                )
        if self.svd not in SVD_KINDS:
            raise MethodConfigError(
                f"svd '{self.svd}' is not one of {', '.join(SVD_KINDS)}: e.g. --svd activation"
            )
        if self.pruning not in PRUNING_KINDS:
            raise MethodConfigError(
                f"pruning '{self.pruning}' is not one of {', '.join(PRUNING_KINDS)}: e.g. "
                "--pruning activation"
            )
        if self.calibration_examples < 1:
            raise MethodConfigError(
                f"calibration_examples {self.calibration_examples} must be >= 1"
            )
        if self.prune_iterations < 1:
            raise MethodConfigError(f"prune_iterations {self.prune_iterations} must be >= 1")
        if not 0.0 < self.compress_share < 1.0:
            raise MethodConfigError(
                f"compress_share {self.compress_share} must be in (0, 1): some budget must be "
                "left for each iteration and for the final recovery"
            )
        weights = ("embedding_weight", "attention_weight", "hidden_weight", "logit_weight",
                   "label_weight")  # fmt: skip
        for name in weights:
            if getattr(self, name) < 0:
                raise MethodConfigError(f"{name} {getattr(self, name)} must be >= 0")
        if not any(getattr(self, name) for name in weights):
            raise MethodConfigError("every loss weight is 0: the student would learn nothing")

    def keep_schedule(self) -> list[float]:
        """The kept fraction of the factors after each pruning step; empty without pruning."""
        p_weight = self.kept()[2]
        if p_weight == 1.0:
            return []
        n = self.prune_iterations
        return [p_weight ** ((i + 1) / n) for i in range(n)]

    def check(self, context) -> None:
        if self.kept() == (1.0, 1.0, 1.0):
            raise MethodConfigError(
                "p_embd, p_svd and p_weight are all 1: nothing compressed; keep less of one, "
                "e.g. --p-svd 0.5, or pick a --preset"
            )
        # Here, not at the top: the CLI reads this module for its flags without loading torch.
        from ...arch import model_type_of
        from ...compact import UnsupportedArchitectureError, layout_for

        try:
            layout_for(model_type_of(context.predecessor.config))
        except UnsupportedArchitectureError as error:
            raise MethodConfigError(f"LadaBERT cannot factorise this model: {error}") from None
