"""``imagefolder:PATH`` through every command, as a user's own JPEG folder goes: train, eval, probe, summary."""

import json
import warnings


def test_an_image_folder_trains_evaluates_probes_and_summarises(cli, image_folder, tmp_path):
    dataset = f"imagefolder:{image_folder}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = cli("train", "--model", "resnet20", "--dataset", dataset, "--epochs", "1", "--batch-size", "4",
                             "--set", "image_size=32", "--device", "cpu", "--out", tmp_path / "runs", "--name", "own",
                             "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["complete"] and 0 <= trained["final_acc"] <= 1
    assert "16 images" in err  # 2 classes x 8 training images
    worker_warnings = [str(w.message) for w in caught if "worker" in str(w.message)]
    assert not worker_warnings, worker_warnings[0]

    checkpoint = tmp_path / "runs" / "own" / "best.pt"
    code, out, err = cli("eval", "--checkpoint", checkpoint, "--device", "cpu", "--json")
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["n"] == 6  # the val/ split: 2 classes x 3
    assert abs(evaluated["acc1"] - trained["final_acc"]) < 1e-9

    code, out, err = cli("probe", "--checkpoint", checkpoint, "--epochs", "1", "--batch-size", "4",
                         "--layers", "layer1", "--device", "cpu", "--out", tmp_path / "runs", "--name", "probe", "--json")
    assert code == 0, err
    probed = json.loads(out)
    assert (tmp_path / "runs" / "probe" / "probe.json").is_file() and probed

    code, out, err = cli("summary", "--model", "resnet20", "--dataset", dataset, "--json")
    assert code == 0, err
    assert json.loads(out)
