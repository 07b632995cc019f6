"""Every bad input: one line naming what and where, a non-zero exit, no
traceback, and nothing created in either store."""

import pytest
from studyfiles import study_toml

from hpsearch.data.testing import write_cifar_batches

GOOD = study_toml(train={"scheduler": "multistep", "milestones": [1, 2]})


def assert_refused(result, *needles):
    assert result.exit_code != 0, result.output
    out = result.output.strip()
    assert "Traceback" not in out
    assert len(out.splitlines()) == 1, out
    for needle in needles:
        assert needle in out, out


def assert_stores_untouched(workdir):
    assert not (workdir / "mlruns" / "optuna.db").exists()
    assert not (workdir / "mlruns" / "mlflow.db").exists()


def run_file(cli, workdir, text, *extra):
    path = workdir / "bad.toml"
    path.write_text(text)
    return cli("run", "--study", path, "--quiet", *extra, ok=False)


@pytest.mark.parametrize("text, needles", [
    ("[study\nsampler = 1", ["bad.toml", "not valid TOML"]),
    (GOOD.replace("[space]", "[space]\nlearning_rate = [0.1]"), ["[space].learning_rate", "unknown key", "allowed"]),
    (GOOD.replace('pruner = "none"', 'pruner = "none"\ntrials = 3'), ["[study].trials", "unknown key"]),
    (GOOD.replace("epochs = 2", 'epochs = "two"'), ["[train]", "epochs", "must be an integer"]),
    (GOOD.replace("lr = [0.1]", "lr = []"), ["[space].lr", "empty choice list"]),
    (GOOD.replace("lr = [0.1]", "lr = [0.1, -0.5]"), ["[space].lr", "must be > 0"]),
    (GOOD.replace("lr = [0.1]", "lr = [0.1]\nbatch_size = [0, 64]"), ["[space].batch_size", "must be >= 1"]),
    (GOOD.replace("milestones = [1, 2]", "milestones = [2, 1]"), ["[train]", "milestones", "strictly increasing"]),
    (GOOD.replace("milestones = [1, 2]", "milestones = [1, 5]"), ["milestones", "beyond the 2 epochs"]),
    (GOOD.replace('model = "resnet-tiny"', 'model = "resnet-9000"'), ["[train]", "unknown preset 'resnet-9000'"]),
    (GOOD.replace('sampler = "grid"', 'sampler = "bayes"'), ["[study].sampler", "allowed: grid, tpe, random"]),
    (GOOD.replace("lr = [0.1]", "lr = {low = 0.01, high = 0.1}"), ["[space].lr", "grid sampler needs a list"]),
    (GOOD.replace("epochs = 2", "epochs = 2\nseed = 3"), ["[train].seed", "[study].seed"]),
])
def test_bad_study_files(cli, workdir, text, needles):
    assert_refused(run_file(cli, workdir, text), *needles)
    assert_stores_untouched(workdir)


def test_scaling_drops_milestones_past_the_run_as_hpsearch_train_does(cli, workdir):
    """One milestone policy: `--epochs 1` on a 200-epoch study keeps the scaled
    milestones that can still act, like `hpsearch train --epochs 1`."""
    import optuna

    text = GOOD.replace("epochs = 2", "epochs = 200").replace("milestones = [1, 2]", "milestones = [100, 199]")
    run_file(cli, workdir, text, "--epochs", 1)
    (trial,) = optuna.load_study(study_name="bad", storage=f"sqlite:///{workdir}/mlruns/optuna.db").get_trials()
    assert trial.user_attrs["config"]["milestones"] == [1] and trial.user_attrs["config"]["epochs"] == 1


def test_unknown_study_name(cli, workdir):
    assert_refused(cli("run", "--study", "no-such-study", ok=False), "unknown study 'no-such-study'", "smoke")
    assert_stores_untouched(workdir)


def test_unknown_set_key_and_preset(cli, workdir):
    path = workdir / "ok.toml"
    path.write_text(GOOD)
    assert_refused(cli("run", "--study", path, "--set", "modle=resnet-tiny", ok=False), "unknown key 'modle'")
    assert_refused(cli("run", "--study", path, "--set", "model=resnet-0", ok=False), "unknown preset 'resnet-0'")
    assert_stores_untouched(workdir)


def test_workers_zero(cli, workdir):
    assert_refused(cli("run", "--study", "smoke", "--workers", 0, ok=False), "--workers 0", ">= 1")
    assert_stores_untouched(workdir)


@pytest.mark.parametrize("damage, needles", [
    ("missing", ["data_batch_2", "cifar-10-batches-py"]),
    ("truncated", ["data_batch_2"]),
    ("corrupt", ["data_batch_2"]),
])
def test_missing_truncated_or_corrupt_cifar_batch(cli, workdir, offline, damage, needles):
    root = workdir / "cifar"
    write_cifar_batches(root, n_per_batch=20, n_test=5)
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    if damage == "missing":
        batch.unlink()
    elif damage == "truncated":
        batch.write_bytes(batch.read_bytes()[:300])
    else:
        batch.write_bytes(b"\x80\x02this is not a pickle at all" * 10)
    r = run_file(cli, workdir, GOOD.replace('"synthetic"', '"cifar10"').replace("val_size = 100", "val_size = 20"),
                 "--data-dir", root)
    assert_refused(r, *needles)
    assert_stores_untouched(workdir)


def test_storage_url_that_cannot_be_opened(cli, workdir):
    path = workdir / "ok.toml"
    path.write_text(GOOD)
    for url in ("postgresql+psycopg://nobody@127.0.0.1:1/nowhere", "nosuchdb://x/y"):
        r = cli("run", "--study", path, "--storage", url, ok=False)
        assert_refused(r, "Optuna storage", "cannot be opened")
    assert_stores_untouched(workdir)


def test_unreachable_tracking_server(cli, workdir):
    path = workdir / "ok.toml"
    path.write_text(GOOD)
    r = cli("run", "--study", path, "--tracking-uri", "http://127.0.0.1:9", ok=False)
    assert_refused(r, "MLflow tracking store http://127.0.0.1:9 cannot be opened")
    assert_stores_untouched(workdir)


def test_set_seed_in_a_study_is_refused(cli, workdir):
    assert_refused(run_file(cli, workdir, GOOD, "--set", "seed=3"), "--set seed", "--seed")
    assert_stores_untouched(workdir)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_refused_before_anything_is_written(cli, workdir):
    assert_refused(run_file(cli, workdir, GOOD, "--device", "cuda"), "device", "no CUDA device")
    assert_stores_untouched(workdir)
    r = cli("train", "--model", "resnet-tiny", "--device", "cuda", "--set", "synthetic_size=300",
            "--set", "val_size=100", ok=False)
    assert_refused(r, "device", "no CUDA device")
    assert_stores_untouched(workdir)
