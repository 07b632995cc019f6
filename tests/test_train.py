import json

import pytest
import torch

from hpsearch.data import load_dataset
from hpsearch.data.testing import write_cifar_batches
from hpsearch.search.train.checkpoint import load_model
from hpsearch.search.train.config import TrainConfig
from hpsearch.search.train.loop import StopTraining, evaluate, train

SMALL = dict(model="resnet-tiny", dataset="synthetic", synthetic_size=600, val_size=100, batch_size=64)


def small_data(cfg):
    return load_dataset(cfg.dataset, val_size=cfg.val_size, split_seed=cfg.split_seed,
                        synthetic_size=cfg.synthetic_size)


def epochs_without_time(path):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in json.loads(path.read_text())["epochs"]]


def test_train_command_learns_synthetic_and_repeats_exactly(cli, workdir):
    for name in ("a.json", "b.json"):
        cli("train", "--model", "resnet-tiny", "--dataset", "synthetic", "--epochs", 3, "--seed", 7,
            "--json", name, "--quiet")
    a = json.loads((workdir / "a.json").read_text())
    assert a["best_val_acc"] >= 0.90
    assert a["param_count"] == 78_042
    assert len(a["epochs"]) == 3
    assert set(a["epochs"][0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    assert epochs_without_time(workdir / "a.json") == epochs_without_time(workdir / "b.json")


def test_train_command_logs_a_run_to_mlflow(cli, workdir):
    from mlflow.tracking import MlflowClient

    cli("train", "--model", "resnet-tiny", "--epochs", 2, "--set", "synthetic_size=600", "--set", "val_size=100",
        "--quiet")
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("hpsearch-train")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["param_count"] == 78042 and "param_count" not in run.data.params
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert arts == {"checkpoints/best.pt"}


def test_cifar10_end_to_end_and_checkpoint_reloads(cli, workdir):
    root = workdir / "cifar"
    write_cifar_batches(root, n_per_batch=40, n_test=20, seed=3)
    cli("train", "--dataset", "cifar10", "--data-dir", root, "--model", "resnet-tiny", "--epochs", 2,
        "--set", "val_size=50", "--json", "r.json", "--save", "best.pt", "--quiet", "--no-track")
    report = json.loads((workdir / "r.json").read_text())
    model, ckpt = load_model(workdir / "best.pt")
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    data = load_dataset("cifar10", data_dir=root, val_size=cfg.val_size, split_seed=cfg.split_seed)
    assert len(data.train_y) == 150 and len(data.val_y) == 50
    _, acc = evaluate(model, data.val_x, data.val_y)
    assert acc == pytest.approx(report["best_val_acc"], abs=1e-9)
    assert ckpt["metrics"]["val_acc"] == report["best_val_acc"]


def test_unknown_key_preset_or_value_is_one_line_and_exit_2(cli, workdir):
    for args, needle in (
        (["--set", "learning_rate=1"], "unknown key 'learning_rate'; allowed:"),
        (["--model", "resnet-huge"], "unknown preset 'resnet-huge'; allowed: resnet-seed"),
        (["--set", "lr=-1"], "lr: -1.0 must be > 0"),
    ):
        r = cli("train", "--epochs", 1, "--no-track", *args, ok=False)
        assert r.exit_code == 2, r.output
        assert needle in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1


def test_a_callback_can_stop_training():
    cfg = TrainConfig(**SMALL, epochs=3, scheduler="cosine")

    class StopAfterOne:
        def on_epoch_end(self, record, state):
            raise StopTraining(f"told to stop at {record.epoch}")

    result = train(cfg, small_data(cfg), [StopAfterOne()])
    assert result.status == "stopped" and result.reason == "told to stop at 1"
    assert result.epochs_run == 1


def test_non_finite_loss_stops_with_a_reason():
    cfg = TrainConfig(**SMALL, epochs=3, scheduler="none", lr=1e30)
    result = train(cfg, small_data(cfg))
    assert result.status == "diverged"
    assert "non-finite loss at epoch 1" in result.reason
    assert result.epochs_run == 1


def test_resume_from_an_epoch_checkpoint_continues_exactly():
    cfg = TrainConfig(**SMALL, epochs=3, scheduler="multistep", milestones=(1, 2), optimizer="lookahead")
    data = small_data(cfg)
    saved = {}

    class Keep:
        def on_epoch_end(self, record, state):
            saved[record.epoch] = state.checkpoint()

    full = train(cfg, data, [Keep()])
    resumed = train(cfg, data, resume=saved[1])
    strip = lambda h: [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert resumed.best_val_acc == full.best_val_acc
    for k, v in full.best_state.items():
        assert torch.equal(v, resumed.best_state[k])


def test_lookahead_moves_halfway_back_to_the_slow_weights():
    """k=1, alpha=0.5: each step ends halfway between the old weights and
    where plain SGD would have gone (Zhang et al. 2019)."""
    from hpsearch.models import build_model
    from hpsearch.search.train.optim import build_optimizer

    def one_step(optimizer_name):
        cfg = TrainConfig(model="resnet-tiny", optimizer=optimizer_name, lookahead_k=1, lookahead_alpha=0.5,
                          momentum=0.0, weight_decay=0.0)
        torch.manual_seed(0)
        model = build_model(cfg.model_config())
        before = [p.detach().clone() for p in model.parameters()]
        opt = build_optimizer(cfg, model)
        model(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))).sum().backward()
        opt.step()
        return before, [p.detach() for p in model.parameters()]

    before, sgd = one_step("sgd")
    _, lookahead = one_step("lookahead")
    for b, s, la in zip(before, sgd, lookahead):
        torch.testing.assert_close(la, b + 0.5 * (s - b))


def test_the_kept_checkpoint_is_chosen_by_the_selection_metric():
    cfg = TrainConfig(**SMALL, epochs=3, scheduler="none", lr=0.3)
    data = small_data(cfg)
    by_acc, by_loss = train(cfg, data), train(cfg, data, select="val_loss")
    accs, losses = [r.val_acc for r in by_acc.history], [r.val_loss for r in by_loss.history]
    assert by_acc.best_epoch == 1 + accs.index(max(accs))
    assert by_loss.best_epoch == 1 + losses.index(min(losses))
    assert by_loss.best_val_acc == by_loss.history[by_loss.best_epoch - 1].val_acc
