"""`theseus plan`: real shapes, choices on a fake timer, real timings from the named
runtimes, its files, its cache and its bad input."""

from __future__ import annotations

import json

import pytest
import torch
from test_imports import import_graph
from tiny import ARCHITECTURES, tiny_model

from bert_theseus.cli import main
from bert_theseus.compact import LAYOUTS, compact_from, layout_for
from bert_theseus.plan import Plan, PlanConfig, PlanError, make_plan
from bert_theseus.plan.shapes import Shape, shapes, untrained, with_weights_of
from bert_theseus.plan.timing import Candidate
from bert_theseus.speed import count_parameters

SUPPORTED = [a for a in ARCHITECTURES if a in LAYOUTS]
# The tiny models: 4 layers of 4 heads (size 8) and 48 FFN neurons. Width -> heads kept
# (round(w x 4)) and neurons (the same share of 48).
HEADS = {1.0: 4, 0.75: 3, 0.5: 2, 0.25: 1}
NEURONS = {4: 48, 3: 36, 2: 24, 1: 12}
QUICK = {"repeats": 1, "warmup": 0, "batch_size": 2, "length": 8}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test its own plan cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BERT_THESEUS_CACHE", str(folder))
    return folder


def layer_params(model) -> int:
    layout = layout_for(getattr(model.config, "base_model_type", model.config.model_type))
    return count_parameters(model.base_model.get_submodule(layout.layers))


def sliced(predecessor, shape: Shape):
    """The shape cut from the predecessor itself, the way a route would start it: the
    first heads and neurons of its bottom layers."""
    config = predecessor.config
    layers = len(config.layer_heads) if hasattr(config, "layer_heads") else config.num_hidden_layers
    # Layers past the depth are dropped: any head and neuron will do there.
    heads = [range(shape.layer_heads[i] if i < shape.depth else 1) for i in range(layers)]
    neurons = [range(shape.layer_intermediate_sizes[i] if i < shape.depth else 1)
               for i in range(layers)]  # fmt: skip
    return compact_from(predecessor, heads, neurons, layers=range(shape.depth))


@pytest.mark.parametrize("arch", SUPPORTED)
def test_shapes_are_real_models_of_the_sizes_named(arch):
    predecessor = tiny_model(arch)
    planned = shapes(predecessor.config, PlanConfig())
    expected = {(d, w) for d in range(1, 5) for w in HEADS} - {(4, 1.0)}
    assert {(s.depth, s.width) for s in planned} == expected
    layout = layout_for(arch)
    for shape in planned:
        heads, neurons = HEADS[shape.width], NEURONS[HEADS[shape.width]]
        assert shape.layer_heads == (heads,) * shape.depth
        assert shape.layer_intermediate_sizes == (neurons,) * shape.depth
        model = untrained(predecessor.config, shape)
        layers = model.base_model.get_submodule(layout.layers)
        assert len(layers) == shape.depth
        for layer in layers:
            assert layer.get_submodule(layout.query).out_features == 8 * heads
            assert layer.get_submodule(layout.ffn_in).out_features == neurons
        cut = sliced(predecessor, shape)
        assert count_parameters(model) == count_parameters(cut)
        assert layer_params(model) == layer_params(cut)


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("arch", SUPPORTED)
def test_a_shape_is_timed_with_the_predecessor_s_own_weights(arch, compact):
    """An untrained model's LayerNorm scales of 1 and biases of 0 are folded away by
    OpenVINO, so the plan builds each shape from the predecessor's values: its encoder is
    the predecessor's bottom layers, first heads and neurons, value for value."""
    from bert_theseus.compact import to_stock_if_possible

    predecessor = tiny_model(arch)
    if compact:
        predecessor = compact_from(predecessor, heads=[[0, 1, 2], [1, 3], [0, 1, 2, 3], [2]])
    with torch.no_grad():  # values no initialisation gives: unit scales and zero biases gone
        for parameter in predecessor.parameters():
            parameter.add_(torch.randn_like(parameter))
    for shape in shapes(predecessor.config, PlanConfig(widths=[1.0, 0.5], depths=[3])):
        model = with_weights_of(predecessor, shape)
        expected = to_stock_if_possible(sliced(predecessor, shape)).base_model.state_dict()
        got = model.base_model.state_dict()
        assert expected.keys() <= got.keys() and {k.split(".")[0] for k in got.keys()
                                                  - expected.keys()} <= {"pooler"}  # fmt: skip
        assert all(torch.equal(got[k], expected[k]) for k in expected), shape.name


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_a_compact_predecessor_plans_relative_to_its_own_layers(arch):
    predecessor = compact_from(tiny_model(arch), heads=[[0, 1, 2], [1, 3], [0, 1, 2, 3], [2]],
                               neurons=[range(30), range(20), range(48), range(6)])  # fmt: skip
    planned = shapes(predecessor.config, PlanConfig(widths=[1.0, 0.5], depths=[4, 3]))
    half = next(s for s in planned if (s.depth, s.width) == (4, 0.5))
    # round(0.5 x [3, 2, 4, 1]) = [2, 1, 2, 0 -> 1]; neurons: the same share of [30, 20, 48, 6]
    assert half.layer_heads == (2, 1, 2, 1)
    assert half.layer_intermediate_sizes == (20, 10, 24, 6)
    assert (4, 1.0) not in {(s.depth, s.width) for s in planned}
    three = next(s for s in planned if (s.depth, s.width) == (3, 1.0))
    assert three.layer_heads == (3, 2, 4)
    for shape in (half, three):
        model = untrained(predecessor.config, shape)
        assert count_parameters(model) == count_parameters(sliced(predecessor, shape))


def fake_timer(calls: list):
    """Seconds = layers x heads per layer / the runtime's factor: the predecessor (4 x 4)
    takes 16 s on torch-fp32, a shape 16 / (d x h) times less, twice that on onnx-int8."""
    factor = {"torch-fp32": 1.0, "onnx-int8": 2.0, "onnx-fp32": 1.0}

    def timer(entries, config):
        calls.append(len(entries))
        seconds = []
        for entry in entries:
            heads = entry.shape.layer_heads if entry.shape else (4,) * 4
            seconds.append(sum(heads) / factor[entry.runtime])
        return seconds

    return timer


def planned(runtimes=("torch-fp32", "onnx-int8"), calls=None, **settings):
    config = PlanConfig(runtime=list(runtimes), **{**QUICK, **settings})
    return make_plan(tiny_model("bert"), config, timer=fake_timer([] if calls is None else calls))


def test_the_chosen_shape_has_the_most_capacity_that_meets_the_target():
    plan = planned()
    assert plan.baseline["seconds"] == 16 and plan.baseline["speedup"] == 1
    assert len(plan.rows) == 15 * 2
    # torch-fp32, 4x: layers x heads <= 4; of those, 4 layers of 1 head hold the most.
    row = plan.choose(target_speedup=4, runtime="torch-fp32")
    assert (row["depth"], row["width"], row["runtime"]) == (4, 0.25, "torch-fp32")
    assert row["speedup"] == 4 and row["latency_ms"] == 4000
    ranked = sorted((r for r in plan.rows if r["runtime"] == "torch-fp32" and r["speedup"] >= 4),
                    key=lambda r: -r["capacity"])  # fmt: skip
    assert ranked[0] is row and ranked[0]["capacity"] > ranked[1]["capacity"]
    # onnx-int8 is twice as fast: 4 layers of 2 heads reach 4x; any runtime picks it too.
    row = plan.choose(target_speedup=4, runtime="onnx-int8")
    assert (row["depth"], row["width"], row["runtime"]) == (4, 0.5, "onnx-int8")
    assert plan.choose(target_speedup=4) == row
    # A latency target: 4 s per batch on torch-fp32 is the 4x row again.
    row = plan.choose(target_latency_ms=4000, runtime="torch-fp32")
    assert (row["depth"], row["width"]) == (4, 0.25)
    # The predecessor on onnx-int8 is 2x, reported but never chosen.
    own = next(r for r in plan.predecessor if r["runtime"] == "onnx-int8")
    assert (own["depth"], own["width"], own["speedup"]) == (4, 1.0, 2.0)


def test_a_chosen_row_gives_back_its_shape():
    plan = planned()
    row = plan.choose(target_speedup=4, runtime="torch-fp32")
    predecessor = tiny_model("bert")
    assert Shape.from_row(row) == Shape.of(predecessor.config, 4, 0.25)
    assert count_parameters(untrained(predecessor.config, Shape.from_row(row))) == row["parameters"]


def test_auto_leaves_openvino_out_with_one_line_where_it_is_missing(monkeypatch, capsys):
    from bert_theseus.plan import make

    assert make.resolve_runtimes(PlanConfig()) == ["torch-fp32", "onnx-int8", "openvino-int8"]
    monkeypatch.setattr(make, "_has_openvino", lambda: False)
    assert make.resolve_runtimes(PlanConfig()) == ["torch-fp32", "onnx-int8"]
    assert capsys.readouterr().err.count("openvino or nncf is not installed") == 1


def test_an_onnx_graph_that_differs_from_pytorch_is_refused(monkeypatch):
    from bert_theseus.plan import timing

    monkeypatch.setattr(timing, "TOLERANCE", -1.0)  # any difference, even 0, is too much
    config = PlanConfig(runtime=["onnx-fp32"], widths=[1.0], depths=[1], **QUICK)
    with pytest.raises(PlanError, match="ONNX graph of the predecessor differs from PyTorch"):
        make_plan(tiny_model("bert"), config)


def test_an_unreachable_target_names_the_fastest_shape():
    plan = planned()
    with pytest.raises(PlanError) as error:
        plan.choose(target_speedup=40)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "no shape reaches 40x over torch-fp32 at batch 2 x 8: the fastest, depth 1 width 0.25 "
        "on onnx-int8, measured 32.0x"
    )
    with pytest.raises(PlanError, match="depth 1 width 0.25 on torch-fp32, measured 16.0x"):
        plan.choose(target_speedup=20, runtime="torch-fp32")
    with pytest.raises(PlanError, match="not in the plan"):
        plan.choose(target_speedup=2, runtime="openvino-int8")


def test_a_real_plan_times_each_runtime_on_its_own_engine(tmp_path, monkeypatch):
    """Each candidate's runners, seen as it is released after its timing (the default
    timer holds one shape at a time, then drops its model, runners and files)."""
    seen, release = [], Candidate.release

    def spy(candidate):
        for runtime, runner in candidate.runners.items():
            files = sorted(p.name for p in candidate.folder.glob("*.onnx"))
            seen.append((runtime, type(getattr(runner, "__self__", runner)).__name__, files))
        release(candidate)
        if candidate.shape is not None:  # a shape's model and files are gone
            assert candidate.model is None and not candidate.folder.exists()

    monkeypatch.setattr(Candidate, "release", spy)
    config = PlanConfig(runtime=["torch-fp32", "onnx-int8"], widths=[1.0, 0.5], depths=[4, 2],
                        **QUICK)  # fmt: skip
    plan = make_plan(tiny_model("bert"), config)
    assert {(r["depth"], r["width"]) for r in plan.rows} == {(4, 0.5), (2, 1.0), (2, 0.5)}
    assert len(seen) == 2 * 4  # the predecessor and 3 shapes, on 2 runtimes
    for runtime, runner, files in seen:
        if runtime == "onnx-int8":
            assert runner == "OnnxClassifier"
            assert files == ["model.int8.onnx", "model.onnx"]
        else:
            assert runner == "partial"  # torch_logits of the model itself
    for row in plan.rows + plan.predecessor:
        assert row["seconds"] > 0
        if row["runtime"] == "onnx-int8":
            assert row["engine"].startswith("onnxruntime ")
            assert "CPUExecutionProvider" in row["engine"]
            assert row["engine"].endswith("model.int8.onnx")
        else:
            assert row["engine"].startswith("torch ")


def test_the_files_are_written_and_the_plan_reloads(tmp_path):
    plan = planned()
    plan.save(tmp_path / "out")
    assert Plan.load(tmp_path / "out") == plan
    record = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert next(iter(record)) == "written_by"
    lines = (tmp_path / "out" / "plan.csv").read_text().splitlines()
    assert len(lines) == 1 + len(plan.rows)
    assert lines[0].startswith("depth,width,runtime,parameters,capacity")
    text = (tmp_path / "out" / "plan.md").read_text()
    assert "| 4 | 1.00x (predecessor) | 1.33x | 2.00x | 4.00x |" in text
    assert "onnx-int8: speed-up over torch-fp32 at batch 2 x 8" in text
    # Frontier of torch-fp32: the widest shape at each speed-up
    frontier = plan.frontier("torch-fp32")
    assert [(r["depth"], r["width"]) for r in frontier][:2] == [(1, 0.25), (2, 0.25)]
    for row in frontier:
        beaten = [
            o
            for o in plan.rows
            if o["runtime"] == "torch-fp32"
            and o["capacity"] > row["capacity"]
            and o["speedup"] > row["speedup"]
        ]
        assert beaten == []
    assert (tmp_path / "out" / "plan.png").read_bytes()[:4] == b"\x89PNG"


def test_the_cache_is_reused_and_keyed_by_the_settings(cache):
    calls = []
    first = planned(calls=calls)
    assert calls == [2 + 15 * 2] and len(list((cache / "plans").iterdir())) == 1
    assert planned(calls=calls) == first
    assert len(calls) == 1  # reused: the timer was not called
    planned(calls=calls, length=16)  # other settings: measured again, kept beside
    assert len(calls) == 2 and len(list((cache / "plans").iterdir())) == 2
    config = PlanConfig(runtime=["torch-fp32", "onnx-int8"], **QUICK)
    make_plan(tiny_model("bert"), config, timer=fake_timer(calls), refresh=True)
    assert len(calls) == 3 and len(list((cache / "plans").iterdir())) == 2


def test_the_cli_writes_the_plan_and_reports_its_table(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "plan"
    argv = ["plan", str(tiny_bert_dir), "--output", str(out), "--runtime", "torch-fp32",
            "--widths", "1", "0.5", "--depths", "2", "--repeats", "1", "--warmup", "0",
            "--batch-size", "2", "--length", "8"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "torch-fp32: speed-up over torch-fp32 at batch 2 x 8" in printed.out
    assert f"written to {out}" in printed.out
    assert sorted(p.name for p in out.iterdir()) == ["plan.csv", "plan.json", "plan.md",
                                                     "plan.png"]  # fmt: skip
    assert main(argv) == 2  # not over a finished output without --overwrite
    assert "pass --overwrite to replace it (a plan theseus wrote)" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert "plan: reusing the plan measured" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--runtime", "tensorrt"], "unknown runtime(s) tensorrt"),
        (["--widths", "0", "0.5"], "width(s) 0.0 outside (0, 1]"),
        (["--depths", "9"], "depth 9 is not between 1 and the predecessor's 4 layers"),
        (["--length", "100"], "--length 100 is more than the predecessor's 64 token positions"),
        (["--output", "MODEL"], "--output"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tiny_bert_dir, tmp_path, capsys, cache,
                                                  flags, message):  # fmt: skip
    before = {p.name: p.read_bytes() for p in tiny_bert_dir.iterdir()}
    out = tmp_path / "plan"
    flags = [str(tiny_bert_dir) if f == "MODEL" else f for f in flags]
    argv = ["plan", str(tiny_bert_dir), "--output", str(out), "--length", "8", *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("theseus: error: ") and message in err
    assert not out.exists() and not cache.exists()
    assert {p.name: p.read_bytes() for p in tiny_bert_dir.iterdir()} == before


def test_plan_imports_no_method_and_no_job():
    jobs = ("methods", "commands", "compare", "cli", "run_setup", "run_folder", "training")
    upward = [f"{source} -> {target}" for source, targets in import_graph().items()
              if source.startswith("bert_theseus.plan") for target in targets
              if target.split(".")[1] in jobs]  # fmt: skip
    assert upward == []
