"""Whether the tests' tiny models can tell a wrong int8 variant from CPU rounding: each
architecture's lead of the top logit over the next (PyTorch fp32) on what export checks
without dev data, against how far each int8 variant moves that lead.

    python benchmarks/int8_margins.py                                # this CPU's kernels
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/int8_margins.py        # a CPU without VNNI
    python benchmarks/int8_margins.py --nncf overflow-fix            # NNCF's 7-bit weights

The models are those of tests/test_deploy_variants.py (2 layers, the tests' tokenizer):
`random` as initialised, `decisive` as the test uses it (tests/tiny.py: the output bias of
its label raised so that it leads by the test's bound). ONNX Runtime's dynamic int8 and
OpenVINO's NNCF int8 are built as `export` builds them (calibrated on the same inputs) and
run in this process, so ONEDNN_MAX_CPU_ISA picks OpenVINO's int8 kernels (oneDNN: AVX2 and
AVX512_CORE have no VNNI; bf16 variants do not compile under such a cap, hence left out).
`--nncf no-embeddings` keeps the embeddings (RoBERTa's position ids included) out of
quantisation; `overflow-fix` quantises every layer's weights to 7 bits, NNCF's remedy for
the int16 saturation of int8 products on CPUs without VNNI (its default: the first only).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import SPECIALS, WORDS  # noqa: E402  (the tests' tokenizer's vocabulary)
from test_deploy_variants import REDUCED_PRECISION_BOUND  # noqa: E402
from tiny import ARCHITECTURES, decisive, tiny_model  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402

from bert_theseus.deploy import ExportConfig, export_onnx  # noqa: E402
from bert_theseus.deploy import variants as built  # noqa: E402
from bert_theseus.deploy.export import SAMPLE_TEXTS, _calibration  # noqa: E402
from bert_theseus.deploy.runtime import accepted_inputs, load_variant, torch_logits  # noqa: E402

INT8 = ("onnx-int8", "openvino-int8")


def lead(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How far each row's logit of `labels` leads the best other one (negative: it lost)."""
    rows = np.arange(len(logits))
    others = logits.copy()
    others[rows, labels] = -np.inf
    return logits[rows, labels] - others.max(-1)


def nncf_options(kind: str) -> dict:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    if kind == "no-embeddings":
        return {"ignored_scope": nncf.IgnoredScope(patterns=[".*embeddings.*"], validate=False)}
    if kind == "overflow-fix":
        fix = AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)
        return {"advanced_parameters": fix}
    return {}


def measure(model, tokenizer_dir: Path, folder: Path, kind: str) -> list[str]:
    """The fp32 lead, and per int8 variant the largest |logit - PyTorch| and lead shift."""
    model.save_pretrained(folder / "model")
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(folder / "model")
    export = folder / "export"
    report = export_onnx(str(folder / "model"), str(export), ExportConfig(int8=True))
    texts = BertTokenizerFast.from_pretrained(tokenizer_dir)(SAMPLE_TEXTS, padding=True,
                                                             return_tensors="pt")  # fmt: skip
    batch = {k: v for k, v in texts.items() if k in report["inputs"]}
    built.openvino_fp32(export / "model.onnx", export)
    plain = load_variant(export, "onnx-fp32")
    import nncf

    quantize = nncf.quantize
    nncf.quantize = functools.partial(quantize, **nncf_options(kind))
    try:  # NNCF's progress bars go to stdout: keep the table readable
        with contextlib.redirect_stdout(io.StringIO()):
            built.openvino_int8(export, _calibration([plain.feeds(batch)]))
    finally:
        nncf.quantize = quantize
    reference = torch_logits(model, batch)
    labels = reference.argmax(-1)
    cells = [f"{lead(reference, labels).min():.5f}"]
    for name in INT8:
        logits = load_variant(export, name).logits(batch)
        shift = np.abs(lead(logits, labels) - lead(reference, labels)).max()
        kept = (logits.argmax(-1) == labels).mean()
        cells.append(f"{np.abs(logits - reference).max():.5f} {shift:.5f} {kept:.2f}")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nncf", choices=["default", "no-embeddings", "overflow-fix"],
                        default="default")  # fmt: skip
    parser.add_argument("--architectures", nargs="+", default=ARCHITECTURES)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("model     arch         fp32 lead | per int8 variant: max |diff|, lead shift, labels "
          f"kept ({', '.join(INT8)})")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="int8-margins-") as scratch:
        tokenizer_dir = Path(scratch) / "tokenizer"
        vocab = {token: index for index, token in enumerate(SPECIALS + WORDS)}
        BertTokenizerFast(vocab=vocab).save_pretrained(tokenizer_dir)
        for arch in args.architectures:
            for kind in ("random", "decisive"):
                model = tiny_model(arch, layers=2)
                if kind == "decisive":
                    texts = BertTokenizerFast.from_pretrained(tokenizer_dir)(
                        SAMPLE_TEXTS, padding=True, return_tensors="pt")  # fmt: skip
                    checked = {k: v for k, v in texts.items() if k in accepted_inputs(model)}
                    decisive(model, checked, REDUCED_PRECISION_BOUND)
                folder = Path(scratch) / f"{arch}-{kind}"
                cells = measure(model, tokenizer_dir, folder, args.nncf)
                print(f"{kind:9s} {arch:12s} {' | '.join(cells)}", flush=True)


if __name__ == "__main__":
    main()
