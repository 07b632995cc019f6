"""The execution path per device (`execution.choose_path`) and the
measured-figures file it reads: real figures files in a temporary
HPSEARCH_SPEEDS, the real CPU device, no GPU needed."""

import json

import pytest
import torch

from hpsearch.search.train import figures as figs
from hpsearch.search.train.config import ConfigError, TrainConfig, parse_assignments
from hpsearch.search.train.execution import (
    ExecutionPath,
    break_even_images,
    choose_path,
    variant,
    variant_key,
)
from hpsearch.search.train.loop import setup

CPU = torch.device("cpu")


@pytest.fixture
def figures_file(tmp_path, monkeypatch):
    path = tmp_path / "speeds.json"
    monkeypatch.setenv("HPSEARCH_SPEEDS", str(path))
    return path


def record_steps(model="resnet-tiny", batch_size=64, compile_seconds=30.0, bf16_checked=None, compiled_checked=True):
    """A bench's figures for this CPU: fp32 1,000 images/s, fp32+cl 1,100, bf16 1,500,
    compiled fp32+cl 2,200 after `compile_seconds` (break-even: s / (1/1100 - 1/2200) = 2,200 s x images/s)."""
    dkey = figs.device_key(CPU)
    variants = {variant_key(v): {**v, "images_per_s": rate} for v, rate in (
        (variant(False, False), 1000.0), (variant(False, True), 1100.0), (variant(True, False), 1500.0))}
    compiled = {**variant(False, True, "default"), "images_per_s": 2200.0, "compile_seconds": compile_seconds}
    variants[variant_key(compiled)] = compiled
    figs.record(dkey, "steps", figs.key(model, batch_size),
                {"model": model, "batch_size": batch_size, "plain_images_per_s": 950.0, "variants": variants})
    classes = {"fp32": {"keeps_accuracy": True}, "fp32+compiled": {"keeps_accuracy": compiled_checked}}
    if bf16_checked is not None:
        classes["bf16"] = {"keeps_accuracy": bf16_checked}
    figs.record(dkey, "accuracy", model, {"classes": classes})


def test_with_no_figures_cpu_runs_plain_fp32_and_says_why(figures_file):
    path = choose_path(TrainConfig(model="resnet-tiny"), CPU, images_to_train=10**9)
    assert (path.amp, path.channels_last, path.compile, path.fused_sgd) == (False, False, "off", False)
    assert "nothing measured for resnet-tiny" in path.why and "\n" not in path.why
    assert path.describe()["why"] == path.why and path.describe()["precision"] == "fp32"


def test_a_compile_variant_is_chosen_only_for_a_run_that_repays_it(figures_file):
    record_steps(compile_seconds=60.0)  # break-even 60 / (1/1100 - 1/2200) = 132,000 images
    assert break_even_images(60.0, 1100.0, 2200.0) == pytest.approx(132_000)
    config = TrainConfig(model="resnet-tiny", batch_size=64)
    short = choose_path(config, CPU, images_to_train=3 * 45_000)  # 135,000 > break-even, < 2 x break-even
    assert short.compile == "off" and short.channels_last and not short.amp  # bf16 unchecked: not chosen
    assert "not repaid" in short.why and "bf16" in short.why
    long = choose_path(config, CPU, images_to_train=200 * 45_000)
    assert long.compile == "default" and long.channels_last and "compilation repaid" in long.why
    assert choose_path(config, CPU, images_to_train=None).compile == "off"  # unknown length: never
    # setup() builds what the path says: channels_last weights, a compiled module, the chosen path kept
    run = setup(config, CPU, images_to_train=200 * 45_000)
    assert run.path == long and run.forward is not run.model
    conv = next(p for p in run.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_accuracy_check_gates_bf16_and_the_nearest_batch_size_is_used(figures_file):
    record_steps(bf16_checked=False)
    assert not choose_path(TrainConfig(model="resnet-tiny"), CPU, 1000).amp
    record_steps(bf16_checked=True)
    path = choose_path(TrainConfig(model="resnet-tiny", batch_size=128), CPU, 1000)
    assert path.amp and not path.channels_last
    assert "nearest measured to 128" in path.why and "batch 64" in path.why


def test_explicit_config_values_win(figures_file):
    record_steps(bf16_checked=True)
    config = TrainConfig(model="resnet-tiny", amp=False, channels_last=False, compile="off")
    path = choose_path(config, CPU, 10**9)
    assert (path.amp, path.channels_last, path.compile) == (False, False, "off")
    assert "set in the config: amp=false, channels_last=false, compile=off" in path.why
    forced = choose_path(TrainConfig(model="resnet-tiny", compile="max-autotune"), CPU, 10)
    assert forced.compile == "max-autotune"  # nothing measured matches: the explicit value, auto -> plain
    assert "no variant measured" in forced.why
    half = choose_path(TrainConfig(model="resnet-tiny", amp=True), CPU, 10)
    assert half.amp and half.compile == "off"  # explicit bf16 needs no accuracy check; compile not repaid


def test_fused_trials_refuse_only_an_explicit_compile_mode_and_run_eager(figures_file):
    from hpsearch.search.train.fused import FusedTrials, check_fusable

    record_steps()
    configs = [TrainConfig(model="resnet-tiny", seed=i, device="cpu") for i in range(2)]
    check_fusable(configs)
    assert FusedTrials(configs, CPU, 1000).path.compile == "off"
    with pytest.raises(ConfigError, match="compile: 'default' is not supported for fused trials"):
        check_fusable([c.replace(compile="default") for c in configs])
    check_fusable([c.replace(compile="off") for c in configs])


def test_figures_file_round_trip_and_version_one(figures_file):
    figs.record_speed("cuda: test GPU", "resnet-seed", 64, 3700.0)
    record_steps()
    known = json.loads(figures_file.read_text())
    assert known["version"] == 2 and set(known["devices"]) == {"cuda: test GPU", figs.device_key(CPU)}
    assert figs.load() == known and not figures_file.with_suffix(".tmp").exists()
    assert figs.measured_speed("resnet-seed", [32, 64])["images_per_s"] == 3700.0
    assert figs.measured_speed("resnet-seed", [64], device="cpu: other") is None
    # the old flat speeds file is read as the speeds of the devices it names
    figures_file.write_text(json.dumps({"resnet-seed@128": {"device": "cuda: old", "model": "resnet-seed",
                                                            "batch_size": 128, "images_per_s": 5000.0}}))
    assert figs.measured_speed("resnet-seed", [128]) == {"model": "resnet-seed", "batch_size": 128,
                                                         "images_per_s": 5000.0, "device": "cuda: old"}
    figures_file.write_text("{not json")
    assert figs.load()["devices"] == {} and figs.measured_speed("resnet-seed", [64]) is None


@pytest.mark.parametrize("values, expected", [
    ({}, ("auto", "auto", "auto")),
    ({"amp": True, "channels_last": False, "compile": True}, (True, False, "default")),
    ({"compile": False}, ("auto", "auto", "off")),
    ({"compile": "reduce-overhead", "amp": "auto"}, ("auto", "auto", "reduce-overhead")),
])
def test_config_accepts_auto_booleans_and_compile_modes(values, expected):
    c = TrainConfig(**values)
    assert (c.amp, c.channels_last, c.compile) == expected
    assert TrainConfig.from_dict(c.to_dict()) == c
    cli = TrainConfig.from_dict(parse_assignments([f"{k}={str(v).lower()}" for k, v in values.items()]))
    assert cli == c


@pytest.mark.parametrize("values, line", [
    ({"amp": "fast"}, "amp: 'fast' is not allowed; allowed: auto, true, false"),
    ({"amp": 1}, "amp: 1 must be auto, true or false"),
    ({"channels_last": "maybe"}, "channels_last: 'maybe' is not allowed; allowed: auto, true, false"),
    ({"compile": "fastest"}, "compile: 'fastest' is not allowed; allowed: auto, off, default, max-autotune, "
                             "reduce-overhead"),
])
def test_bad_execution_values_are_one_line(values, line):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**values)
    assert str(e.value) == line


def test_bad_value_through_the_cli_is_one_line_and_exit_2(cli, workdir):
    r = cli("train", "--set", "compile=fastest", "--epochs", "1", ok=False)
    assert r.exit_code == 2 and "compile: 'fastest' is not allowed" in r.output and "Traceback" not in r.output


def test_execution_path_of_keeps_working(figures_file):
    path = ExecutionPath.of(TrainConfig(model="resnet-tiny"), CPU)
    assert path.autocast().__class__.__name__ == "nullcontext" and path.compiled(torch.nn.Identity()) is not None
    bf16 = ExecutionPath.of_variant(variant(True, False), CPU)
    with bf16.autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
