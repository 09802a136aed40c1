"""Configuration of the distillation baselines: vanilla KD, BERT-PKD, and KD added to Theseus."""

from __future__ import annotations

from dataclasses import dataclass, field


class DistillConfigError(ValueError):
    """A distillation setting is invalid; the message says which and how to fix it."""


PKD_STRATEGIES = ("skip", "last")


@dataclass
class DistillConfig:
    """Where a baseline student starts, and how it learns from its teacher (the predecessor).

    Defaults sit inside the grids of BERT-PKD (Sun et al., 2019): T in {5, 10, 20},
    alpha in {0.2, 0.5, 0.7}, beta in {10, 100, 500, 1000}.

    >>> DistillConfig(temperature=5, alpha=0.5)                    # vanilla KD
    >>> DistillConfig(beta=100, layer_map=[[1, 2], [2, 4]])        # PKD 6 -> 3, explicit map
    >>> DistillConfig(student_from="bert-base-uncased")            # the paper's baseline start
    """

    temperature: float = field(
        default=5.0, metadata={"help": "softmax temperature T of the soft targets"}
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "weight of the soft-target loss; the hard-label loss gets 1 - alpha "
            "(regression tasks: MSE to the teacher's output)"
        },
    )
    beta: float = field(
        default=100.0,
        metadata={"help": "PKD: weight of the MSE between normalised [CLS] states"},
    )
    pkd_strategy: str = field(
        default="skip",
        metadata={
            "help": "PKD layer map: skip (student layer j learns teacher layer j*c, the "
            "paper's PKD-Skip) or last (the teacher's last layers before the top)"
        },
    )
    layer_map: list[list[int]] | None = field(
        default=None,
        metadata={
            "help": "PKD: explicit [student layer, teacher layer] pairs, counted from 1 "
            "(0 is the embeddings), e.g. [[1,2],[2,4]]; overrides pkd_strategy"
        },
    )

    student_from: str | None = field(
        default=None,
        metadata={
            "help": "truncated, kd, pkd: cut the student from this pre-trained model (folder "
            "or Hub id) with a new head, as the paper's baselines were, instead of from the "
            "fine-tuned predecessor; module replacing always starts from the predecessor"
        },
    )

    def validate(self) -> None:
        if not self.temperature > 0:
            raise DistillConfigError(
                f"temperature {self.temperature} must be positive: pass e.g. --temperature 5"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise DistillConfigError(f"alpha {self.alpha} is outside [0, 1]: pass e.g. 0.5")
        if self.beta < 0:
            raise DistillConfigError(f"beta {self.beta} must not be negative: pass e.g. 100")
        if self.pkd_strategy not in PKD_STRATEGIES:
            raise DistillConfigError(
                f"unknown pkd_strategy '{self.pkd_strategy}': use one of "
                f"{', '.join(PKD_STRATEGIES)}"
            )
        if self.layer_map is not None and any(len(pair) != 2 for pair in self.layer_map):
            raise DistillConfigError(
                f"layer_map {self.layer_map} must be a list of [student, teacher] pairs, "
                "e.g. [[1,2],[2,4]]"
            )
