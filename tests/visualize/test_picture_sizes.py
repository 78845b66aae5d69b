"""Pictures a user can open and read (issue 22, item 16): ``visualize patches --top N``
draws at most ``PICTURED_PATCHES`` per channel (the CSV keeps all N), and the captions
under each image stay clear of the next row of images."""

from __future__ import annotations

import csv

import pytest
import torch


def test_patches_with_a_huge_top_draw_the_best_and_list_them_all(cli, tmp_path):
    from PIL import Image

    from convzoo.commands.visualize import PICTURED_PATCHES

    code, out, err = cli("visualize", "patches", "--model", "lenet5", "--random-init", "--layer", "features.0",
                         "--channels", "0-1", "--top", "100000", "--limit", "300", "--device", "cpu",
                         "--out", tmp_path, "--name", "patches")
    assert code == 0, err
    assert f"the pictures show the top {PICTURED_PATCHES} of 300 patches per channel" in err
    with open(tmp_path / "patches" / "patches.csv") as file:
        assert len(list(csv.DictReader(file))) == 2 * 300  # one best patch per image and channel
    for picture in ("patches.png", "patches-grid.png"):
        width, _ = Image.open(tmp_path / "patches" / picture).size
        assert width < PICTURED_PATCHES * 120, picture  # 300 tiles a row were 27,000 pixels wide


def caption_overlaps(figure) -> int:
    """How many (caption, image) pairs of different cells overlap on the drawn figure."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    cells = [axes for axes in figure.axes if axes.images]
    return sum(axes.xaxis.label.get_window_extent(renderer).overlaps(other.images[0].get_window_extent(renderer))
               for axes in cells for other in cells if other is not axes)


@pytest.mark.parametrize("columns, rows, cell_inches", [(3, 3, 1.3), (3, 3, 0.9), (8, 2, 0.9)])
def test_captions_stay_clear_of_the_next_row(columns, rows, cell_inches):
    from convzoo.visualize.pictures import labelled_rows

    images = [[torch.rand(1, 28, 28) for _ in range(columns)] for _ in range(rows)]
    captions = [[f"ch {row * columns + column}: -0.09→-0.07" for column in range(columns)] for row in range(rows)]
    # maximize's figure: 3 columns of 1.3-inch cells, captions "ch N: before→after"
    figure = labelled_rows(images, captions, [""] * rows, "maximum-response images", cell_inches)
    assert caption_overlaps(figure) == 0
