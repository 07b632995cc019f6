"""Fused trials (search/train/fused.py) against single runs of `train()`.

The equality tests run the fused machinery with one convolution call per
member (`grouped=False`): every kernel is then the one a single run calls, so
on CPU in fp32 each member's records, weights and BatchNorm statistics must be
bit-identical to `train(config, data)` alone; any difference is a bug in the
fusion (data order, augmentation or dropout draws, BatchNorm, SGD, schedule,
pruning). The grouped convolutions themselves (the default) sum the same
products in another order on some shapes, so they are checked to rounding
level on one step, before training's chaos amplifies it.
"""

import os

import pytest
import torch

from hpsearch.data import load_dataset, prepare_batch
from hpsearch.search.train.config import ConfigError, TrainConfig
from hpsearch.search.train.fused import FusedSGD, FusedTrials, member_state, train_fused
from hpsearch.search.train.loop import StopTraining, setup, train, train_step

SMALL = dict(model="resnet-tiny", dataset="synthetic", synthetic_size=400, val_size=100, batch_size=64,
             device="cpu")

# Different seeds, lr, momentum (one of them 0), weight decay (one of them 0),
# nesterov, milestones and gamma, augmentation on and off.
CONFIGS = [
    TrainConfig(**SMALL, epochs=3, seed=1, lr=0.1, momentum=0.9, weight_decay=5e-4, scheduler="multistep",
                milestones=(1, 2), gamma=0.1),
    TrainConfig(**SMALL, epochs=3, seed=2, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.0,
                scheduler="multistep", milestones=(2,), gamma=0.5, augment=False),
    TrainConfig(**SMALL, epochs=3, seed=3, lr=0.02, momentum=0.0, weight_decay=1e-4, scheduler="multistep",
                milestones=(1,), gamma=0.3),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Bit-exactness is checked on one CPU thread: with several, CPU kernels
    split a reduction across threads by the tensor's shape (BatchNorm over
    B x C channels is split otherwise than over C), so fused and single runs
    round differently (measured: 6e-7 in epoch 1's train loss on 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", val_size=100, split_seed=0, synthetic_size=400)


class FinalState:
    """Keeps the member's weights and buffers after its last epoch."""

    def __init__(self):
        self.state = None

    def on_epoch_end(self, record, state):
        if hasattr(state, "model_state"):
            self.state = state.model_state()
        else:
            self.state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}


class StopAt:
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, record, state):
        if record.epoch == self.epoch:
            raise StopTraining(f"pruned at epoch {record.epoch}")


def curve(result):
    return [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in result.history]


def assert_same_state(a, b):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def singles(data):
    """Each config trained alone: (result, state after its last epoch)."""
    out = []
    for config in CONFIGS:
        final = FinalState()
        out.append((train(config, data, [final]), final.state))
    return out


def test_each_member_trains_exactly_as_it_would_alone(data, singles):
    finals = [FinalState() for _ in CONFIGS]
    fused = train_fused(CONFIGS, data, [[f] for f in finals], grouped=False)
    for (single, single_state), member, final in zip(singles, fused, finals):
        assert curve(member) == curve(single)
        assert [r["lr"] for r in curve(member)] != [member.history[0].lr] * 3  # the schedules did step
        assert (member.status, member.best_epoch, member.best_val_acc) == (single.status, single.best_epoch,
                                                                            single.best_val_acc)
        assert_same_state(member.best_state, single.best_state)
        assert_same_state(final.state, single_state)  # weights and BatchNorm running statistics
        assert member.param_count == single.param_count and member.model_config == single.model_config


def test_a_pruned_member_leaves_the_others_unchanged(data, singles):
    fused = train_fused(CONFIGS, data, [[], [StopAt(1)], []], grouped=False)
    assert fused[1].status == "stopped" and fused[1].reason == "pruned at epoch 1"
    assert curve(fused[1]) == curve(singles[1][0])[:1]
    for b in (0, 2):
        assert fused[b].status == "completed"
        assert curve(fused[b]) == curve(singles[b][0])


def test_members_may_run_different_numbers_of_epochs(data, singles):
    short = CONFIGS[0].replace(epochs=1, scheduler="none")
    fused = train_fused([short, CONFIGS[1]], data, grouped=False)
    assert curve(fused[0]) == curve(train(short, data))
    assert curve(fused[1]) == curve(singles[1][0])


def test_lookahead_warmup_and_cosine_members_match_single_runs(data):
    configs = [
        TrainConfig(**SMALL, epochs=2, seed=4, optimizer="lookahead", lookahead_k=2, lookahead_alpha=0.5,
                    scheduler="cosine", warmup_epochs=1),
        TrainConfig(**SMALL, epochs=2, seed=5, optimizer="lookahead", lookahead_k=3, lookahead_alpha=0.8,
                    lr=0.05, nesterov=True, scheduler="none", label_smoothing=0.1),
    ]
    fused = train_fused(configs, data, grouped=False)
    for config, member in zip(configs, fused):
        single = train(config, data)
        assert curve(member) == curve(single)
        assert_same_state(member.best_state, single.best_state)


def test_fused_sgd_is_torch_sgd_per_member():
    torch.manual_seed(0)
    configs = [TrainConfig(**SMALL, lr=lr, momentum=m, nesterov=n, weight_decay=wd, scheduler="none")
               for lr, m, n, wd in ((0.1, 0.9, False, 1e-4), (0.03, 0.5, True, 0.0), (0.2, 0.0, False, 5e-4))]
    shapes = [(4, 3, 3, 3), (7,)]
    stacked = [torch.randn(len(configs), *s) for s in shapes]
    fused = FusedSGD(stacked, configs)
    singles = []
    for b, c in enumerate(configs):
        params = [p[b].clone() for p in stacked]
        singles.append((params, torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                                                nesterov=c.nesterov and c.momentum > 0)))
    for _ in range(4):
        grads = [torch.randn_like(p) for p in stacked]
        for p, g in zip(stacked, grads):
            p.grad = g
        fused.step()
        for b, (params, opt) in enumerate(singles):
            for p, g in zip(params, grads):
                p.grad = g[b].clone()
            opt.step()
            for p, q in zip(params, stacked):
                assert torch.equal(p, q[b])


def test_grouped_convolutions_match_a_single_step_to_rounding(data):
    """One step of each member (dropout on) from the same weights on its own
    batch. The grouped kernels sum each output's C_in*k*k products (27 to
    576 here) in another order: relative rounding about sqrt(576) * 6e-8,
    some 1e-6 of values of order 1. Measured on CPU: max abs difference
    2.1e-7 in the state, 2.4e-7 in the loss; the bound leaves a margin of 40."""
    dev = torch.device("cpu")
    trials = FusedTrials(CONFIGS, dev, data.train_y.numel(), grouped=True)
    runs = [setup(c, dev) for c in CONFIGS]
    gens = [torch.Generator().manual_seed(c.seed) for c in CONFIGS]
    trials.dropouts[0].generators = gens
    xs = [prepare_batch(data.train_x[64 * b : 64 * (b + 1)], None, None) for b in range(len(CONFIGS))]
    ys = [data.train_y[64 * b : 64 * (b + 1)] for b in range(len(CONFIGS))]
    trials.model.train()
    losses, _ = trials.step(torch.stack(xs, 1).flatten(1, 2), torch.stack(ys))
    for b, run in enumerate(runs):
        run.model.train()
        torch.manual_seed(CONFIGS[b].seed)  # the dropout mask of gens[b]
        loss, _ = train_step(run.model, run.optimizer, run.criterion, xs[b], ys[b])
        assert losses[b].item() == pytest.approx(loss.item(), abs=1e-5)
        state = member_state(trials.model, b)
        for key, value in run.model.state_dict().items():
            torch.testing.assert_close(state[key], value, atol=1e-5, rtol=0, msg=key)


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(model="resnet-seed"), "fused trials must share the architecture: trial 0 and trial 1 differ in"),
        (dict(channels=(16, 32, 128)), "channels (16, 32, 64) vs (16, 32, 128)"),
        (dict(batch_size=32), "batch_size: fused trials must share it; trial 0 has 64, trial 1 has 32"),
    ],
)
def test_configs_that_cannot_share_one_model_are_refused_in_one_line(data, change, needle):
    with pytest.raises(ConfigError) as err:
        train_fused([CONFIGS[0], CONFIGS[1].replace(**change)], data)
    message = str(err.value)
    assert needle in message and "\n" not in message


class CheckpointAt:
    def __init__(self, epoch):
        self.epoch, self.checkpoint = epoch, None

    def on_epoch_end(self, record, state):
        if record.epoch == self.epoch:
            self.checkpoint = state.checkpoint()


@pytest.mark.parametrize("configs", [
    CONFIGS,
    [TrainConfig(**SMALL, epochs=3, seed=6, optimizer="lookahead", lookahead_k=2, scheduler="cosine",
                 warmup_epochs=2),
     TrainConfig(**SMALL, epochs=3, seed=7, optimizer="lookahead", lookahead_k=3, lookahead_alpha=0.8,
                 momentum=0.0, scheduler="multistep", milestones=(2,))],
], ids=["sgd", "lookahead-warmup"])
def test_a_members_epoch_checkpoint_resumes_in_a_single_run_exactly(data, configs):
    """What a fused trial's epoch checkpoint must allow: a killed group's
    members each resume alone, with the numbers they would have had."""
    keepers = [CheckpointAt(1) for _ in configs]
    train_fused(configs, data, [[k] for k in keepers], grouped=False)
    for config, keeper in zip(configs, keepers):
        resumed = train(config, data, resume=keeper.checkpoint)
        assert curve(resumed) == curve(train(config, data))


def test_workers_are_placed_round_robin_over_the_gpus_and_said_so():
    from hpsearch.search.study.workers import placement

    assert placement(4, 1, mps=False) == ("worker(s) 1, 2, 3, 4 on GPU 0; workers sharing a GPU take turns on it "
                                          "(no CUDA MPS running: `nvidia-cuda-mps-control -d`, started by whoever "
                                          "administers the GPU, lets their kernels overlap)")
    assert placement(5, 2, mps=True) == ("worker(s) 1, 3, 5 on GPU 0; worker(s) 2, 4 on GPU 1; workers sharing a "
                                         "GPU run their kernels concurrently (CUDA MPS is running)")
    assert placement(2, 4) == "worker(s) 1 on GPU 0; worker(s) 2 on GPU 1"
    assert placement(2, 0).startswith("on the CPU")


def test_cuda_mps_is_seen_by_its_control_pipe(tmp_path, monkeypatch):
    from hpsearch.search.gpus import mps_status
    from hpsearch.search.study.workers import placement

    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert mps_status() == {"pipe_directory": str(tmp_path), "running": False}
    assert "take turns" in placement(2, 1)
    os.mkfifo(tmp_path / "control")  # what nvidia-cuda-mps-control -d makes
    assert mps_status()["running"] and "concurrently (CUDA MPS is running)" in placement(2, 1)
