"""``convzoo predict``: the run's own preprocessing and class names, eval's predictions
exactly, and unreadable files reported without stopping the rest."""

from __future__ import annotations

import csv
import json

import torch


def write_mnist_pngs(folder, data_dir, count: int) -> None:
    """The first ``count`` MNIST test images as PNG files."""
    from torchvision.io import write_png

    from convzoo.data import get_dataset_spec, load_tensors

    images, _ = load_tensors(get_dataset_spec("mnist"), train=False, data_dir=str(data_dir), size=count)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        write_png(image, str(folder / f"{index:05d}.png"))


def eval_predictions(checkpoint: str, count: int) -> torch.Tensor:
    """Top-1 classes of the first ``count`` test images through ``convzoo eval``'s own loader."""
    from convzoo.config import config_from_dict
    from convzoo.engine.checkpoint import load_checkpoint, load_model_state
    from convzoo.engine.setup import build_model, dataset_spec_for, loaders_for

    loaded = load_checkpoint(checkpoint)
    config = config_from_dict({**loaded["config"], "test_size": count, "eval_batch_size": 100})
    spec, pad_to = dataset_spec_for(config)
    loaders = loaders_for(config, spec, pad_to, torch.device("cpu"))
    model = build_model(config.model, spec, loaders.image_size)
    load_model_state(model, loaded["model"], checkpoint, config.model)
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images).argmax(1) for images, _ in loaders.test])


def test_predict_on_mnist_test_pngs_gives_evals_predictions(mnist_checkpoint, data_dir, tmp_path, cli):
    count = 300
    write_mnist_pngs(tmp_path / "digits", data_dir, count)
    code, out, err = cli("predict", "--checkpoint", mnist_checkpoint, tmp_path / "digits", "--top-k", "1",
                         "--batch-size", "128", "--json")
    assert code == 0, err
    result = json.loads(out)
    predicted = torch.tensor([entry["top_k"][0]["class"] for entry in result["predictions"]])
    assert result["predicted"] == count and result["failed"] == 0
    assert torch.equal(predicted, eval_predictions(mnist_checkpoint, count))
    assert len(predicted.unique()) >= 3  # the predictions vary, so matching them means something


def test_class_names_survive_train_checkpoint_predict(synthetic_checkpoint, cli):
    from convzoo.data.synthetic import CLASS_NAMES

    assert torch.load(synthetic_checkpoint, weights_only=True)["class_names"] == list(CLASS_NAMES)
    code, out, err = cli("predict", "--checkpoint", synthetic_checkpoint, "--samples", "4", "--top-k", "3")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("synthetic[test][") for line in lines)
    assert all(any(name in line for name in CLASS_NAMES) for line in lines)


def test_checkpoint_without_class_names_falls_back_to_indices_and_says_so(synthetic_checkpoint, tmp_path, cli):
    old = torch.load(synthetic_checkpoint, weights_only=True)
    del old["class_names"]
    torch.save(old, tmp_path / "old.pt")
    code, out, err = cli("predict", "--checkpoint", tmp_path / "old.pt", "--samples", "2", "--top-k", "1")
    assert code == 0, err
    assert "stores no class names" in err and "showing class indices" in err
    assert out.strip().splitlines()[0].startswith("synthetic[test][")


def test_folder_with_a_corrupt_file_predicts_the_others_and_reports_it(synthetic_checkpoint, tmp_path, cli):
    from torchvision.io import write_png

    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    # Any size and mode: RGB photos of other sizes are brought to the run's 1x32x32.
    write_png(torch.randint(0, 255, (3, 480, 640), dtype=torch.uint8), str(folder / "a-large-rgb.png"))
    write_png(torch.randint(0, 255, (1, 20, 20), dtype=torch.uint8), str(folder / "nested" / "c-small.png"))
    (folder / "b-corrupt.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    csv_path = tmp_path / "predictions.csv"
    code, out, err = cli("predict", "--checkpoint", synthetic_checkpoint, folder, "--top-k", "2", "--csv", csv_path,
                         "--json")
    assert code == 1
    result = json.loads(out)  # still exactly one JSON object
    assert result["predicted"] == 2 and result["failed"] == 1
    assert result["failures"][0]["image"].endswith("b-corrupt.jpg")
    assert "1 of 3 images could not be read" in err
    rows = list(csv.DictReader(open(csv_path)))
    assert [row["image"].rsplit("/", 1)[-1] for row in rows] == ["a-large-rgb.png", "b-corrupt.jpg", "c-small.png"]
    assert rows[1]["error"] and not rows[0]["error"] and rows[0]["name_1"]


def test_predict_errors_are_one_line(synthetic_checkpoint, tmp_path, cli):
    not_ours = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, not_ours)
    cases = [
        (["--checkpoint", synthetic_checkpoint, "--samples", "2", "--top-k", "11"], "--top-k must be between 1"),
        (["--checkpoint", not_ours, "--samples", "2"], "not a convzoo checkpoint"),
        (["--checkpoint", synthetic_checkpoint, tmp_path / "nowhere.png"], "does not exist"),
        (["--checkpoint", synthetic_checkpoint], "no images given"),
    ]
    for arguments, message in cases:
        code, out, err = cli("predict", *arguments)
        assert code != 0 and message in err, (arguments, err)
        assert len(err.strip().splitlines()) == 1


def test_predictor_python_api(synthetic_checkpoint):
    from convzoo.deploy import Predictor

    predictor = Predictor.from_checkpoint(synthetic_checkpoint)
    probabilities, classes = predictor.predict(torch.rand(3, 1, 32, 32), top_k=2)
    assert probabilities.shape == classes.shape == (3, 2)
    assert torch.all(probabilities[:, 0] >= probabilities[:, 1])
