"""The segmentation task's metrics and loss against hand-computed numbers."""

import math

import pytest
import torch

from convzoo.tasks.segmentation import (
    IGNORE_INDEX, Segmentation, confusion_matrix, evaluate, scores_from_confusion, segmentation_loss,
)

# A 3x4 label map with one void pixel, and a prediction (3 classes).
MASK = torch.tensor([[0, 0, 1, 1],
                     [0, 2, 1, 1],
                     [2, 2, 2, IGNORE_INDEX]])
PREDICTED = torch.tensor([[0, 1, 1, 1],
                          [0, 2, 1, 0],
                          [2, 2, 1, 2]])


def test_the_confusion_matrix_counts_true_rows_against_predicted_columns_without_void():
    expected = torch.tensor([[2, 1, 0],   # class 0: 3 pixels, one called 1
                             [1, 3, 0],   # class 1: 4 pixels, one called 0
                             [0, 1, 3]])  # class 2: 4 pixels, one called 1; the void pixel nowhere
    assert torch.equal(confusion_matrix(PREDICTED, MASK, 3), expected)


def test_iou_pixel_accuracy_and_mean_follow_the_fcn_papers_definitions():
    scores = scores_from_confusion(confusion_matrix(PREDICTED, MASK, 3))
    # IoU = TP / (TP + FP + FN): class 0 = 2/(2+1+1), class 1 = 3/(3+2+1), class 2 = 3/(3+0+1)
    expected = [2 / 4, 3 / 6, 3 / 4]
    assert scores["per_class"] == pytest.approx(expected)
    assert scores["miou"] == pytest.approx(sum(expected) / 3)
    assert scores["pixel_acc"] == pytest.approx(8 / 11)


def test_a_class_in_neither_labels_nor_predictions_is_left_out_of_the_mean():
    scores = scores_from_confusion(confusion_matrix(PREDICTED, MASK, 5))
    assert scores["per_class"][3:] == [None, None]
    assert scores["miou"] == pytest.approx((2 / 4 + 3 / 6 + 3 / 4) / 3)


def test_the_loss_ignores_void_pixels_and_averages_over_the_labelled_ones():
    torch.manual_seed(0)
    scores = torch.randn(1, 3, 3, 4, dtype=torch.float64)
    mask = MASK[None]
    log_p = scores.log_softmax(1)
    labelled = [(y, x) for y in range(3) for x in range(4) if MASK[y, x] != IGNORE_INDEX]
    by_hand = -sum(float(log_p[0, MASK[y, x], y, x]) for y, x in labelled) / len(labelled)
    assert float(segmentation_loss(scores, mask)) == pytest.approx(by_hand)


class _Fixed(torch.nn.Module):
    """A 'model' answering the score map it was given for every batch."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def forward(self, images):
        return self.scores[: len(images)]


def test_evaluate_sums_batches_into_one_confusion_matrix():
    scores = torch.nn.functional.one_hot(PREDICTED, 3).permute(2, 0, 1)[None].float() * 10
    scores = scores.repeat(2, 1, 1, 1)
    loader = [(torch.zeros(2, 1, 3, 4), MASK[None].repeat(2, 1, 1))] * 3
    result = evaluate(_Fixed(scores), loader, torch.device("cpu"), num_classes=3, amp=False, per_class=True)
    assert result["n"] == 6
    assert result["miou"] == pytest.approx((2 / 4 + 3 / 6 + 3 / 4) / 3)
    assert result["pixel_acc"] == pytest.approx(8 / 11)
    assert result["per_class"] == pytest.approx([2 / 4, 3 / 6, 3 / 4])
    assert math.isfinite(result["loss"])


def test_training_hits_are_each_images_pixel_accuracy():
    scores = torch.nn.functional.one_hot(PREDICTED, 3).permute(2, 0, 1)[None].float()
    masks = torch.stack([MASK, PREDICTED])  # 8/11 right, then all 12 right
    hits = Segmentation().hits(scores.repeat(2, 1, 1, 1), masks)
    assert float(hits) == pytest.approx(8 / 11 + 1.0)
