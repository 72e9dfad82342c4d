"""include/model/train.py as the SageMaker training toolkit runs it: `python train.py --k v` from the code
directory, SM_* variables for paths, on tiny generated channels (one epoch, a few seconds per run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

MODEL_CODE = Path(__file__).resolve().parents[2] / "include" / "model"


def test_artifact_has_weights_config_and_serving_code(trained) -> None:
    model_dir = trained.model_dir
    assert (model_dir / "model.pth").is_file()
    config = json.loads((model_dir / "model_config.json").read_text())
    assert config["class_names"] == ["bicycle", "motorcycle"]
    assert len(config["mean"]) == len(config["std"]) == 3
    assert config["temperature"] > 0
    for name in ("inference.py", "model.py", "requirements.txt"):
        assert (model_dir / "code" / name).read_bytes() == (MODEL_CODE / name).read_bytes(), name


def test_logs_epochs_and_final_metrics(trained) -> None:
    stdout = trained.result.stdout
    assert re.search(r"^epoch=1 train_loss=\d+\.\d{4} ", stdout, re.MULTILINE), stdout
    assert re.search(r"^test_accuracy=\d\.\d{4}$", stdout, re.MULTILINE), stdout
    assert "threads=1 " in stdout  # torch threads follow SM_NUM_CPUS
    metrics = json.loads((trained.output_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["test_accuracy"] <= 1.0
    # The default ensemble: every member's epochs, one after the other.
    assert [(record["member"], record["epoch"]) for record in metrics["history"]] == [(1, 1), (2, 1)]


def test_members_are_trained_with_their_own_seeds(trained, train_job, pytorch_runner, tmp_path: Path) -> None:
    single = train_job(tmp_path / "single", "--members", "1")
    assert json.loads((trained.model_dir / "model_config.json").read_text())["members"] == 2
    assert json.loads((single.model_dir / "model_config.json").read_text())["members"] == 1
    compare = (
        "import sys, torch\n"
        "pair = torch.load(sys.argv[1], map_location='cpu', weights_only=True)\n"
        "single = torch.load(sys.argv[2], map_location='cpu', weights_only=True)\n"
        "first = {k.removeprefix('members.0.'): v for k, v in pair.items() if k.startswith('members.0.')}\n"
        "second = {k.removeprefix('members.1.'): v for k, v in pair.items() if k.startswith('members.1.')}\n"
        "assert len(first) + len(second) == len(pair) and first.keys() == second.keys() == single.keys()\n"
        "print(all(torch.equal(first[k], single[k]) for k in single),\n"
        "      any(not torch.equal(first[k], second[k]) for k in single))\n"
    )
    result = pytorch_runner(["-c", compare, str(trained.model_dir / "model.pth"), str(single.model_dir / "model.pth")])
    assert result.returncode == 0, result.stderr
    # Member 1 is exactly the single network of the same seed; member 2 (seed + 1) differs from it.
    assert result.stdout.split() == ["True", "True"]


def test_weights_are_a_plain_state_dict(trained, pytorch_runner) -> None:
    check = (
        "import sys, torch\n"
        "state = torch.load(sys.argv[1], map_location='cpu', weights_only=True)\n"
        "assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()), type(state)\n"
        "print(len(state))\n"
    )
    result = pytorch_runner(["-c", check, str(trained.model_dir / "model.pth")])
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 10


def test_hyphenated_flags_and_classes_json(train_job, tmp_path: Path) -> None:
    names = ["scone", "muffin", "crumpet"]
    run = train_job(
        tmp_path,
        "--learning-rate",
        "0.01",
        "--weight-decay",
        "0",
        "--tta-flip",
        "False",
        "--confidence-threshold",
        "0.5",
        class_names=names,
        test_channel=False,
    )
    hyperparameters = json.loads(re.search(r"^hyperparameters: (.*)$", run.result.stdout, re.MULTILINE).group(1))
    assert hyperparameters["learning_rate"] == 0.01
    assert hyperparameters["weight_decay"] == 0.0
    assert hyperparameters["confidence_threshold"] == 0.5
    assert "train=24 classes=['scone', 'muffin', 'crumpet'] " in run.result.stdout
    config = json.loads((run.model_dir / "model_config.json").read_text())
    assert config["class_names"] == names
    assert config["tta_flip"] is False
    metrics = json.loads((run.output_dir / "metrics.json").read_text())["metrics"]
    assert metrics["temperature"] == config["temperature"] == 0.71  # the default, saved as given
    assert not any(key.startswith("test_") for key in metrics)


def test_experiments_are_not_hyperparameters_of_the_job(pytorch_runner, channel_factory, tmp_path: Path) -> None:
    """Mixup, EMA, zoom, rotation, cutout, label smoothing and a validation split live in
    benchmarks/experiments.py: the training job refuses them rather than silently training without them."""
    env = {"SM_CHANNEL_TRAIN": str(channel_factory(tmp_path / "train", 2)), "SM_MODEL_DIR": str(tmp_path / "model")}
    result = pytorch_runner(["train.py", "--epochs", "1", "--mixup", "0.2", "--val_fraction", "0.2"], env=env)
    assert result.returncode != 0
    assert "unrecognized arguments: --mixup 0.2 --val_fraction 0.2" in result.stderr


@pytest.mark.parametrize(
    ("flag", "threshold", "pass_share"),
    [("--confidence_threshold", "0", 1.0), ("--confidence-threshold", "1", 0.0)],
)
def test_confidence_threshold_sets_the_reported_pass_share(
    trained, train_job, tmp_path: Path, flag: str, threshold: str, pass_share: float
) -> None:
    """The threshold is the DAG's Param passed on as a hyperparameter: it decides the reported pass share and
    nothing else; without it (the `trained` job) no pass share is reported at all."""
    unthresholded = json.loads((trained.output_dir / "metrics.json").read_text())["metrics"]
    assert "test_accuracy" in unthresholded
    assert not {"test_pass_share", "test_pass_accuracy"} & set(unthresholded)
    run = train_job(tmp_path, flag, threshold)
    metrics = json.loads((run.output_dir / "metrics.json").read_text())["metrics"]
    assert metrics["test_pass_share"] == pass_share
    assert re.search(rf"^test_pass_share={pass_share:.4f}$", run.result.stdout, re.MULTILINE), run.result.stdout
    assert (run.model_dir / "model.pth").read_bytes() == (trained.model_dir / "model.pth").read_bytes()
    assert metrics["test_accuracy"] == unthresholded["test_accuracy"]


def test_confidence_threshold_must_be_a_probability(pytorch_runner, tmp_path: Path) -> None:
    result = pytorch_runner(["train.py", "--confidence_threshold", "93"], env={"SM_CHANNEL_TRAIN": str(tmp_path)})
    assert result.returncode != 0
    assert "--confidence_threshold must be in [0, 1]" in result.stderr


def test_same_seed_same_weights(trained, train_job, tmp_path: Path) -> None:
    again = train_job(tmp_path / "again")  # the same generated data and default seed as `trained`
    other_seed = train_job(tmp_path / "other", "--seed", "7")
    weights = (trained.model_dir / "model.pth").read_bytes()
    assert (again.model_dir / "model.pth").read_bytes() == weights
    assert (other_seed.model_dir / "model.pth").read_bytes() != weights


def test_sm_environment_gives_the_defaults(pytorch_runner, tmp_path: Path) -> None:
    show = "import json, train; print(json.dumps(vars(train.parse_args([]))))"
    env = {
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_NUM_CPUS": "3",
    }
    result = pytorch_runner(["-c", show], env=env)
    assert result.returncode == 0, result.stderr
    args = json.loads(result.stdout)
    assert (args["model_dir"], args["train"], args["test"], args["output_data_dir"]) == (
        "/opt/ml/model",
        "/opt/ml/input/data/train",
        "/opt/ml/input/data/test",
        "/opt/ml/output/data",
    )
    assert args["num_threads"] == 3
    assert args["confidence_threshold"] is None  # the DAG sends its Param; train.py keeps no copy of it
    assert args["epochs"] > 1 and args["learning_rate"] > 0 and args["batch_size"] > 1


def test_channel_needs_exactly_one_listing(pytorch_runner, channel_factory, tmp_path: Path) -> None:
    channel = channel_factory(tmp_path / "train", 2)
    (channel / "extra.lst").write_text("")
    result = pytorch_runner(
        ["train.py", "--epochs", "1"], env={"SM_CHANNEL_TRAIN": str(channel), "SM_MODEL_DIR": str(tmp_path / "model")}
    )
    assert result.returncode != 0
    assert "expected exactly one *.lst file" in result.stderr
