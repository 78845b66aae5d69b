import torch

from convzoo.data.synthetic import NUM_CLASSES, generate_synthetic


def test_synthetic_data_is_deterministic_and_splits_differ():
    first_images, first_labels = generate_synthetic(200, image_size=16, channels=3, train=True)
    again_images, again_labels = generate_synthetic(200, image_size=16, channels=3, train=True)
    test_images, _ = generate_synthetic(200, image_size=16, channels=3, train=False)
    assert torch.equal(first_images, again_images) and torch.equal(first_labels, again_labels)
    assert not torch.equal(first_images, test_images)


def test_synthetic_data_has_any_shape_and_all_classes():
    images, labels = generate_synthetic(500, image_size=28, channels=1)
    assert images.shape == (500, 1, 28, 28) and images.dtype == torch.uint8
    assert set(labels.tolist()) == set(range(NUM_CLASSES))
    counts = torch.bincount(labels, minlength=NUM_CLASSES)
    assert counts.min() > 25  # roughly balanced


def test_synthetic_classes_are_not_separable_by_mean_colour():
    """Nuisance colour must not give the class away: a nearest-mean-colour rule stays weak."""
    images, labels = generate_synthetic(2000, image_size=16, channels=3)
    colour = images.float().mean(dim=(2, 3))
    centroids = torch.stack([colour[labels == k].mean(0) for k in range(NUM_CLASSES)])
    predicted = torch.cdist(colour, centroids).argmin(1)
    assert (predicted == labels).float().mean() < 0.3
