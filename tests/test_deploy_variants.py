"""Every deployment variant (ONNX Runtime plain, int8, fused, fused int8; OpenVINO fp32, bf16,
int8) of tiny models of each architecture, the auto choice, and predict and benchmark on
them.

`--backend auto` exports run in a child process, as the CLI runs them: after one, a SIGTERM
to the same process crashed it (a segmentation fault inside the runtimes' threads, seen
when a later test here signals itself), so the test process must not host them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_deploy import _save
from tiny import ARCHITECTURES, decisive, tiny_model
from transformers import BertTokenizerFast

from bert_theseus.cli import main
from bert_theseus.deploy import ExportConfig, export_onnx, predict_texts
from bert_theseus.deploy.export import SAMPLE_TEXTS, _keeps_score
from bert_theseus.deploy.runtime import EXPORT_VARIANTS, accepted_inputs, exported_variants

# ONNX Runtime's optimizer fuses attention in these (eager export); not in MPNet's (relative
# position bias) or DeBERTa's (disentangled attention).
FUSES_ATTENTION = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert"}

# int8 and bf16 logits stay this close to PyTorch's, and on the checked inputs the tiny
# models' top logit leads by as much: 4x the largest int8 shift of that lead measured, on
# CPUs with VNNI and without (docs/results.md), so a label flips only where a variant is
# wrong, not where the CPU rounds differently.
REDUCED_PRECISION_BOUND = 5e-3


def auto_export(source, output, script: str = "") -> dict:
    """`export --backend auto` in a child process (after `script`, e.g. a monkeypatch);
    its export.json."""
    code = (f"{script}\nfrom bert_theseus.cli import main\n"
            f"raise SystemExit(main(['export', {str(source)!r}, '--onnx', '--backend', "
            f"'auto', '--output', {str(output)!r}]))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    return json.loads((output / "export.json").read_text())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_variant_matches_pytorch_and_auto_chooses_one(arch, tokenizer_dir, tmp_path):
    model = tiny_model(arch, layers=2)
    # What export checks without dev data: its sample texts, as the saved tokenizer pads them.
    texts = BertTokenizerFast.from_pretrained(tokenizer_dir)(SAMPLE_TEXTS, padding=True,
                                                             return_tensors="pt")  # fmt: skip
    checked = {k: v for k, v in texts.items() if k in accepted_inputs(model)}
    source = _save(decisive(model, checked, REDUCED_PRECISION_BOUND), tmp_path / "model",
                   tokenizer_dir)  # fmt: skip
    report = auto_export(source, tmp_path / "export")
    assert list(report["variants"]) == list(EXPORT_VARIANTS)
    assert exported_variants(tmp_path / "export") == list(EXPORT_VARIANTS)
    for name, check in report["variants"].items():
        if EXPORT_VARIANTS[name].exact:  # fp32: held to --tolerance (1e-3), far inside it
            assert check["max_abs_logit_diff"] < 1e-5, name
        else:  # int8 and bf16 keep every label of these inputs, and nearly the logits
            assert check["label_agreement"] == 1.0, name
            assert check["max_abs_logit_diff"] < REDUCED_PRECISION_BOUND, name
    fused = "Attention" in report["fused_operators"]
    assert fused == (arch in FUSES_ATTENTION)
    notices = [n for n in report["notices"] if "fuses no attention" in n]
    assert len(notices) == (0 if fused else 1)
    chosen = report["chosen"]
    seconds = chosen["seconds"]
    assert set(seconds) == set(EXPORT_VARIANTS)
    # Every variant keeps the score here, so the choice is simply the fastest.
    assert chosen["variant"] == min(seconds, key=seconds.get)
    assert chosen["why"].startswith("fastest of the 7 variants that keep the score")


def test_predict_serves_the_chosen_variant_or_any_named_one(tiny_bert_dir, tmp_path):
    export = tmp_path / "export"
    report = auto_export(tiny_bert_dir, export)
    texts = ["good w1 w2", "bad w3 w4 w5"]
    torch_answers = predict_texts(str(tiny_bert_dir), texts)
    for variant in (None, "openvino-int8", "onnx-fused-int8", "openvino-bf16"):
        answers = predict_texts(str(export), texts, variant=variant)
        assert [a["label"] for a in answers] == [a["label"] for a in torch_answers]
        assert [a["score"] for a in answers] == pytest.approx(
            [a["score"] for a in torch_answers], abs=1e-3
        )
    assert report["chosen"]["variant"] in EXPORT_VARIANTS
    assert main(["predict", str(tiny_bert_dir), "--variant", "onnx-int8", "--text", "x"]) == 2
    assert main(["predict", str(export), "--variant", "onnx-int4", "--text", "x"]) == 2


def test_openvino_is_optional(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    out = tmp_path / "openvino"
    args = ["export", str(tiny_bert_dir), "--onnx", "--output", str(out)]
    assert main([*args, "--backend", "openvino"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].endswith("pip install 'bert-theseus[openvino]' (or pick an ONNX Runtime "
                              "variant)") and not out.exists()  # fmt: skip
    report = export_onnx(str(tiny_bert_dir), str(tmp_path / "auto"), ExportConfig(backend="auto"))
    assert list(report["variants"]) == ["onnx-fp32", "onnx-int8", "onnx-fused", "onnx-fused-int8"]
    assert any("OpenVINO is not installed" in n for n in report["notices"])


def test_auto_leaves_out_a_variant_that_loses_score():
    config = ExportConfig(backend="auto", auto_tolerance=0.5)
    report = {
        "pytorch_fp32": {"score": 0.800},
        "variants": {
            "onnx-fp32": {"dev": {"score": 0.796}, "max_abs_logit_diff": 1e-6},
            "onnx-int8": {"dev": {"score": 0.796}, "max_abs_logit_diff": 0.02},
            "openvino-int8": {"dev": {"score": 0.791}, "max_abs_logit_diff": 0.04},
        },
    }
    assert _keeps_score("onnx-fp32", report, config)[0]  # fp32 is verified: always kept
    assert _keeps_score("onnx-int8", report, config) == (
        True, "dev score 0.7960 against PyTorch fp32's 0.8000")  # fmt: skip
    assert not _keeps_score("openvino-int8", report, config)[0]  # 0.9 points lost
    without_dev = {"variants": {"onnx-int8": {"max_abs_logit_diff": 0.1, "label_agreement": 0.99}}}
    assert not _keeps_score("onnx-int8", without_dev, config)[0]
    regression = {"variants": {"onnx-int8": {"max_abs_logit_diff": 0.01}}}
    assert _keeps_score("onnx-int8", regression, config)[0]


def test_benchmark_times_openvino_and_fused_variants_side_by_side(tiny_bert_dir, tmp_path):
    output = tmp_path / "bench.json"
    variants = ["torch-fp32", "onnx-fused", "openvino-fp32", "openvino-int8"]
    args = ["benchmark", str(tiny_bert_dir), "--variants", *variants, "--lengths", "8",
            "--latency-repeats", "1", "--throughput-repeats", "1", "--sweep-batch-sizes", "2",
            "--skip-memory", "--output", str(output)]  # fmt: skip
    assert main(args) == 0
    rows = json.loads(output.read_text())["results"]
    assert [row["variant"] for row in rows] == variants
    assert all(row["throughput_per_s@8"] > 0 and row["disk_mb"] > 0 for row in rows)


def test_auto_leaves_out_a_variant_that_fails_and_says_so(tiny_bert_dir, tmp_path, monkeypatch):
    broken = (
        "import bert_theseus.deploy.export as export\n"
        "def broken(folder, calibration):\n"
        "    raise RuntimeError('NNCF cannot quantise this graph')\n"
        "export.openvino_int8 = broken"
    )
    report = auto_export(tiny_bert_dir, tmp_path / "auto", broken)
    assert "openvino-int8" not in report["variants"] and len(report["variants"]) == 6
    assert "notice: openvino-int8 failed (RuntimeError: NNCF cannot quantise this graph); " \
           "left out" in report["notices"]  # fmt: skip
    assert report["chosen"]["variant"] in report["variants"]
    # Named explicitly (not auto), the same failure fails the export and writes nothing.
    import bert_theseus.deploy.export as export

    def fail(folder, calibration):
        raise RuntimeError("NNCF cannot quantise this graph")

    monkeypatch.setattr(export, "openvino_int8", fail)
    config = ExportConfig(backend="openvino", int8=True)
    with pytest.raises(RuntimeError, match="NNCF"):
        export_onnx(str(tiny_bert_dir), str(tmp_path / "named"), config)
    assert not (tmp_path / "named").exists()
