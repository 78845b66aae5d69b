"""Every command reads an image file the way training does (issue 22, items 1-4): one
decoder (``convzoo.data.image_decoding.read_image``) for mode, bit depth and frames, the
same pixels in ``predict``, ``explain``, ``visualize`` and image-folder ``train``/``eval``,
and a file that is not an image named, skipped and counted instead of ending the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.awkward_images import UNREADABLE, picture, readable, write_awkward_images


@pytest.fixture
def awkward(tmp_path):
    return write_awkward_images(tmp_path / "awkward")


@pytest.fixture(scope="module")
def grey_checkpoint(tmp_path_factory) -> str:
    """LeNet-5 (one grey channel, 32x32) trained for a few seconds on synthetic shapes."""
    from convzoo.config import config_from_dict
    from convzoo.engine.train import train

    torch.set_num_threads(1)
    settings = {"model": "lenet5", "dataset": "synthetic", "epochs": 1, "batch_size": 64, "train_size": 512,
                "test_size": 128, "optimizer": "adamw", "lr": 3e-3, "schedule": "constant",
                "out": str(tmp_path_factory.mktemp("runs")), "name": "grey"}
    return train(config_from_dict(settings), quiet=True)["run_dir"] + "/best.pt"


def test_one_decoder_reads_every_format_by_the_same_rules(awkward):
    from PIL import Image

    from convzoo.data.image_decoding import UnreadableImage, read_image

    for channels in (1, 3):
        for name, path in readable(awkward).items():
            image = read_image(path, channels)
            assert image.shape == (channels, 32, 32) and image.dtype == torch.uint8, name
        # 16 bits: 65535 is white, so the 16-bit copy is the 8-bit picture exactly.
        assert torch.equal(read_image(awkward["grey16.png"], channels), read_image(awkward["grey8.png"], channels))
        assert torch.equal(read_image(awkward["animated.gif"], channels), read_image(awkward["single.gif"], channels))
    colour = picture(32, 0)
    assert np.array_equal(read_image(awkward["lossless.webp"], 3).permute(1, 2, 0).numpy(), colour)
    # Grey from colour is PIL's luma, to the grey level; a grey file keeps its values.
    pil_grey = np.asarray(Image.fromarray(colour).convert("L"))
    assert np.array_equal(read_image(awkward["lossless.webp"], 1)[0].numpy(), pil_grey)
    assert np.array_equal(read_image(awkward["grey8.png"], 1)[0].numpy(), pil_grey)
    assert np.array_equal(read_image(awkward["palette-alpha.png"], 3).numpy(), read_image(awkward["single.gif"], 3).numpy())
    with pytest.raises(UnreadableImage, match=UNREADABLE):
        read_image(awkward[UNREADABLE], 1)
    # 16 bits through PIL (TIFF, PGM: formats torchvision does not decode), where convert("L") would clip.
    sixteen = np.asarray(Image.open(awkward["grey16.png"]))
    for name in ("grey16.tif", "grey16.pgm"):
        Image.fromarray(sixteen).save(awkward["grey8.png"].parent / name)
        assert torch.equal(read_image(awkward["grey8.png"].parent / name, 1), read_image(awkward["grey8.png"], 1))


def model_pixels(path, preprocessing) -> torch.Tensor:
    """What the one decoder and the run's preprocessing make of a file: uint8 at the model's side."""
    from convzoo.data.image_decoding import read_image

    return preprocessing.fit(read_image(path, preprocessing.channels))


def test_predict_gives_a_16_bit_png_the_prediction_of_its_8_bit_copy(grey_checkpoint, awkward, cli):
    code, out, err = cli("predict", "--checkpoint", grey_checkpoint, awkward["grey8.png"], awkward["grey16.png"],
                         "--top-k", "3", "--device", "cpu", "--json")
    assert code == 0, err
    eight, sixteen = json.loads(out)["predictions"]
    assert eight["top_k"] == sixteen["top_k"]


def test_predict_reads_every_format_and_skips_the_text_file(grey_checkpoint, awkward, cli):
    from convzoo.deploy.predict import ImageFiles, Predictor

    code, out, err = cli("predict", "--checkpoint", grey_checkpoint, awkward["grey8.png"].parent, "--top-k", "2",
                         "--device", "cpu", "--json")
    assert code == 1, err  # one file could not be read: said so by the exit code, the rest predicted
    result = json.loads(out)
    assert result["predicted"] == len(readable(awkward)) and result["failed"] == 1
    assert [failure["image"] for failure in result["failures"]] == [str(awkward[UNREADABLE])]
    by_file = {entry["image"]: entry for entry in result["predictions"]}
    predictor = Predictor.from_checkpoint(grey_checkpoint, device="cpu")
    files = list(readable(awkward).values())
    decoded = ImageFiles(files, predictor.preprocessing)
    for index, path in enumerate(files):
        pixels = model_pixels(path, predictor.preprocessing)
        assert torch.equal(decoded[index][1], pixels), path.name  # predict's loader: the one decoder's pixels
        probabilities, classes = predictor.predict(pixels[None], top_k=2)
        assert [top["class"] for top in by_file[str(path)]["top_k"]] == classes[0].tolist()
        assert [top["probability"] for top in by_file[str(path)]["top_k"]] == pytest.approx(probabilities[0].tolist(), abs=1e-6)


def test_explain_and_visualize_features_read_every_format_and_skip_the_text_file(grey_checkpoint, awkward, cli,
                                                                                   tmp_path):
    from convzoo.inspection import input_pipeline, load_image_files, resolve_model_source

    paths = list(awkward.values())
    _, preprocessing = input_pipeline(resolve_model_source(checkpoint=grey_checkpoint))
    loaded = load_image_files(paths, preprocessing)
    expected = torch.stack([model_pixels(path, preprocessing) for path in readable(awkward).values()])
    assert torch.equal(loaded.pixels, expected.float() / 255)  # explain's and visualize's images
    images = [argument for path in paths for argument in ("--image", path)]
    for command in (("explain", "--method", "saliency"), ("visualize", "features", "--layers", "features.0")):
        code, out, err = cli(*command, "--checkpoint", grey_checkpoint, *images, "--device", "cpu",
                             "--out", tmp_path / "runs", "--json")
        assert code == 0, f"{command}: {err}"
        assert json.loads(out)
        assert f"skipped unreadable image {awkward[UNREADABLE]}" in err and "1 of 8 image files skipped" in err


def write_image_folder(root):
    """train/ and val/ of two classes, each class the awkward files of its own picture."""
    for split in ("train", "val"):
        for seed, name in enumerate(("squares", "others")):
            write_awkward_images(root / split / name, seed=seed)
    return root


@pytest.fixture(scope="module")
def awkward_folder_run(tmp_path_factory):
    """(image folder, runs folder, train's stderr) of ResNet-20 trained one epoch on the
    awkward files, two classes."""
    from typer.testing import CliRunner

    from convzoo.cli import app

    torch.set_num_threads(1)
    tmp_path = tmp_path_factory.mktemp("awkward-folder")
    root = write_image_folder(tmp_path / "images")
    runs = tmp_path / "runs"
    # num_workers=0: a worker's stderr does not reach CliRunner's capture.
    arguments = ["train", "--model", "resnet20", "--dataset", f"imagefolder:{root}", "--epochs", "1",
                 "--batch-size", "4", "--set", "image_size=32", "--set", "num_workers=0", "--device", "cpu",
                 "--out", str(runs), "--name", "own", "--json"]
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        runner = CliRunner()
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.stderr
    return root, runs, result.stderr


def test_image_folder_training_takes_gifs_and_skips_a_text_file_naming_it(awkward_folder_run):
    root, _, err = awkward_folder_run
    assert "16 images" in err  # 2 classes x 8 files, GIFs included
    assert f"skipped unreadable image {root / 'train' / 'others' / UNREADABLE}" in err


def test_image_folder_evaluation_reads_the_pixels_of_the_one_decoder(awkward_folder_run):
    from convzoo.data import get_dataset_spec
    from convzoo.data.imagefolder import build_imagefolder_dataset
    from convzoo.inspection.images import Preprocessing

    root, _, _ = awkward_folder_run
    spec = get_dataset_spec(f"imagefolder:{root}", image_size=32)
    evaluation = build_imagefolder_dataset(spec, train=False, augment=False)
    preprocessing = Preprocessing.for_spec(spec)
    for index, (path, _) in enumerate(evaluation.samples):
        if not path.endswith(UNREADABLE):
            expected = preprocessing.normalize(model_pixels(path, preprocessing)[None].float() / 255)[0]
            assert torch.allclose(evaluation[index][0], expected, atol=1e-6), path


def test_image_folder_evaluation_leaves_the_text_file_out_and_counts_it(awkward_folder_run, cli):
    root, runs, _ = awkward_folder_run
    code, out, err = cli("eval", "--checkpoint", runs / "own" / "best.pt", "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 14  # 2 classes x 7 images, not the text file's neighbour twice
    assert f"skipped unreadable image {root / 'val' / 'others' / UNREADABLE}" in err and "2 of 16 files skipped" in err


@pytest.mark.parametrize("command", [
    ("eval",),
    ("predict", "--samples", "16", "--split", "train", "--top-k", "1"),
    ("explain", "--samples", "16", "--split", "train", "--method", "saliency"),
    ("attack", "--samples", "16", "--split", "train", "--method", "fgsm", "--eps", "0.01"),
    ("visualize", "patches", "--layer", "layer1", "--channels", "0-1", "--top", "2"),
    ("visualize", "erf", "--layer", "layer1", "--samples", "4"),
], ids=lambda command: "-".join(command[:2]))
def test_commands_on_an_image_folder_of_awkward_files(awkward_folder_run, command, cli):
    _, runs, _ = awkward_folder_run
    out_option = () if command[0] in ("eval", "predict") else ("--out", runs)
    code, out, err = cli(*command, *out_option, "--checkpoint", runs / "own" / "best.pt", "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)


def test_predict_shows_every_class_of_a_model_with_fewer_than_five(awkward_folder_run, cli):
    _, runs, _ = awkward_folder_run
    code, out, err = cli("predict", "--checkpoint", runs / "own" / "best.pt", "--samples", "2", "--device", "cpu",
                         "--json")
    assert code == 0, err
    assert [len(entry["top_k"]) for entry in json.loads(out)["predictions"]] == [2, 2]


def test_predict_on_a_webp_prints_no_decoder_warning(grey_checkpoint, awkward):
    """torchvision's WebP decoder warns on stderr (from C++, past Python's warnings) when asked
    for grey; the one decoder asks for RGB and converts, so the only stderr line is the summary."""
    import os
    import subprocess
    import sys

    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "convzoo", "predict", "--checkpoint", grey_checkpoint,
                           str(awkward["lossless.webp"]), "--top-k", "1", "--device", "cpu", "--json"],
                          capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and json.loads(done.stdout)["predicted"] == 1
