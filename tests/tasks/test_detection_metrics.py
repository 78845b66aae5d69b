"""The detection task's COCO mAP (pycocotools) on cases whose answer is known independently."""

import pytest
import torch

from convzoo.tasks.detection import coco_scores, target_dicts

TRUTH = [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 5.0, 60.0, 25.0]]), "labels": torch.tensor([1, 2])},
         {"boxes": torch.tensor([[0.0, 0.0, 20.0, 40.0]]), "labels": torch.tensor([1])}]


def perfect(truth):
    return [{"boxes": t["boxes"].clone(), "labels": t["labels"].clone(), "scores": torch.ones(len(t["labels"]))}
            for t in truth]


def test_perfect_detections_score_one():
    scores = coco_scores(perfect(TRUTH), TRUTH, num_classes=3)
    assert scores["map"] == pytest.approx(1.0)
    assert scores["map50"] == pytest.approx(1.0)
    assert scores["per_class"] == pytest.approx([1.0, 1.0])


def test_shifted_boxes_match_only_below_their_iou():
    # Every box is 20 wide; moved 4 px right it overlaps its truth by 16 of 24 columns: IoU = 2/3,
    # a match at COCO's thresholds .50 .55 .60 .65 and none from .70 on.
    shifted = perfect(TRUTH)
    for found in shifted:
        found["boxes"][:, [0, 2]] += 4.0
    scores = coco_scores(shifted, TRUTH, num_classes=3)
    assert scores["map50"] == pytest.approx(1.0)
    assert scores["map75"] == pytest.approx(0.0)
    assert scores["map"] == pytest.approx(4 / 10)  # 4 of COCO's 10 thresholds, precision 1 at each


def test_a_missed_class_and_a_false_positive():
    found = perfect(TRUTH)
    found[0] = {"boxes": found[0]["boxes"][:1], "labels": found[0]["labels"][:1], "scores": torch.ones(1)}  # class 2 missed
    scores = coco_scores(found, TRUTH, num_classes=4)
    assert scores["per_class"][0] == pytest.approx(1.0)
    assert scores["per_class"][1] == pytest.approx(0.0)
    assert scores["per_class"][2] is None  # class 3 has no ground truth
    assert scores["map"] == pytest.approx(0.5)


def test_padded_rows_become_torchvisions_targets_and_empty_images_keep_an_empty_box_tensor():
    padded = torch.full((2, 3, 5), -1.0)
    padded[0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0, 7.0])
    targets = target_dicts(padded)
    assert torch.equal(targets[0]["boxes"], torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert targets[0]["labels"].tolist() == [7] and targets[0]["labels"].dtype == torch.long
    assert targets[1]["boxes"].shape == (0, 4) and targets[1]["labels"].shape == (0,)
