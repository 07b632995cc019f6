import pytest
import torch

from models import PARAM_BUDGET, build_model, count_parameters, model_config, param_count, preset_names

REPORT_COUNTS = {
    "resnet-seed": 4_985_390,  # report: final network
    "resnet-seed-2.6m": 2_636_458,  # report: first experiment
    "resnet-443": 4_697_742,  # report's "around 4.99M": the true count
    "resnet-tiny": 78_042,
}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_forward_backward_shape_and_count(name):
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert count_parameters(model) == param_count(model_config(name))
    if name in REPORT_COUNTS:
        assert count_parameters(model) == REPORT_COUNTS[name]


def test_se_in_every_block_of_resnet_seed_goes_over_budget():
    assert param_count(model_config("resnet-seed", se=True)) > PARAM_BUDGET
    assert param_count(model_config("resnet-443-se")) < PARAM_BUDGET


def test_overrides_change_the_architecture():
    cfg = model_config("resnet-tiny", channels=(8, 16, 32), dropout=0.0)
    assert cfg.channels == (8, 16, 32) and cfg.dropout == 0.0
    assert param_count(cfg) < REPORT_COUNTS["resnet-tiny"]


def test_init_follows_the_report():
    model = build_model("resnet-tiny")
    bn = model.stem[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    # Kaiming normal (fan_out): conv weight std close to sqrt(2 / fan_out)
    conv = model.stages[2][0].conv2.weight
    fan_out = conv.shape[0] * conv.shape[2] * conv.shape[3]
    assert abs(conv.std().item() - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5


def test_models_command_lists_exact_counts(cli):
    out = cli("models").output
    for count in ("4,985,390", "2,636,458", "4,697,742", "78,042"):
        assert count in out
    # resnet-seed with SE in every block: over the budget, shown as such
    row = next(line for line in out.splitlines() if "resnet-seed " in line or "│ resnet-seed  " in line)
    assert "5,021,251" in row and "NO" in row
