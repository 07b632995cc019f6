import pytest

from hpsearch.search.train.config import ConfigError, TrainConfig, parse_assignments, scale_milestones


def test_defaults_are_the_reports_final_selection():
    c = TrainConfig()
    assert (c.batch_size, c.gamma, c.weight_decay, c.milestones) == (64, 0.1, 1e-4, (80, 120))
    assert (c.lr, c.momentum, c.epochs, c.model) == (0.1, 0.9, 200, "resnet-seed")


@pytest.mark.parametrize("changes, key", [
    ({"lr": 0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"milestones": [120, 80]}, "milestones"),
    ({"milestones": [80, 300]}, "milestones"),
    ({"model": "resnet-nope"}, "model"),
    ({"optimizer": "adam"}, "optimizer"),
    ({"lr": "fast"}, "lr"),
    ({"epochs": 2.5}, "epochs"),
    ({"flip": "yes"}, "flip"),
])
def test_bad_values_name_the_key(changes, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        TrainConfig().replace(**changes)


def test_unknown_key_lists_what_is_allowed():
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'; allowed: .*lr"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_command_line_values_are_typed():
    got = parse_assignments(["lr=0.05", "milestones=10,15", "se=true", "dropout=none", "batch_size=32"])
    assert got == {"lr": 0.05, "milestones": [10, 15], "se": True, "dropout": None, "batch_size": 32}
    with pytest.raises(ConfigError, match="batch_size: 'x' must be an integer"):
        parse_assignments(["batch_size=x"])


def test_scale_milestones_keeps_the_shape():
    assert scale_milestones([100, 150], 200, 20) == [10, 15]
    assert scale_milestones([125, 175], 200, 20) == [13, 18]  # half up
    assert scale_milestones([80, 120], 200, 3) == [1, 2]  # at least 1, strictly increasing
    assert scale_milestones([50, 100], 200, 1) == [1]  # 2 would fall past the run's last epoch
    assert scale_milestones([190, 195], 200, 1) == [1]
