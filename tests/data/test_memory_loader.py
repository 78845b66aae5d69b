import torch

from convzoo.data.memory import InMemoryLoader, pad_images, random_crop_flip


def make_loader(**kwargs):
    images = torch.arange(10 * 1 * 4 * 4, dtype=torch.uint8).view(10, 1, 4, 4)
    labels = torch.arange(10)
    defaults = dict(batch_size=3, mean=(0.5,), std=(0.25,))
    defaults.update(kwargs)
    return InMemoryLoader(images, labels, **defaults)


def test_batches_are_normalised_and_cover_the_split_once():
    loader = make_loader()
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    labels = torch.cat([labels for _, labels in batches])
    assert labels.tolist() == list(range(10))
    images, _ = batches[0]
    expected = (torch.arange(16, dtype=torch.float32).view(1, 4, 4) / 255 - 0.5) / 0.25
    torch.testing.assert_close(images[0], expected)


def test_shuffled_order_depends_only_on_seed_and_epoch():
    first = make_loader(shuffle=True, seed=1)
    second = make_loader(shuffle=True, seed=1)
    first.set_epoch(3)
    second.set_epoch(3)
    order = [labels.tolist() for _, labels in first]
    assert order == [labels.tolist() for _, labels in second]
    second.set_epoch(4)
    assert order != [labels.tolist() for _, labels in second]


def test_ranks_take_disjoint_equal_shards():
    shards = []
    for rank in range(3):
        loader = make_loader(shuffle=True, rank=rank, world_size=3, batch_size=2)
        shards.append(torch.cat([labels for _, labels in loader]).tolist())
    assert all(len(shard) == 3 for shard in shards)
    seen = [label for shard in shards for label in shard]
    assert len(set(seen)) == 9


def test_drop_last_keeps_only_full_batches():
    loader = make_loader(drop_last=True)
    assert [len(labels) for _, labels in loader] == [3, 3, 3]


def test_pad_images_centres_with_zeros():
    padded = pad_images(torch.full((2, 1, 28, 28), 7, dtype=torch.uint8), 32)
    assert padded.shape == (2, 1, 32, 32)
    assert padded[:, :, 2:30, 2:30].eq(7).all() and padded.sum() == 7 * 2 * 28 * 28


def test_random_crop_flip_keeps_shape_and_content():
    images = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    out = random_crop_flip(images, padding=2, generator=generator)
    assert out.shape == images.shape and out.dtype == torch.uint8
    # Each output is a shifted (and maybe mirrored) window of the zero-padded input.
    padded = torch.nn.functional.pad(images, (2,) * 4)
    for index in range(8):
        windows = padded[index].unfold(1, 8, 1).unfold(2, 8, 1).permute(1, 2, 0, 3, 4).reshape(-1, 3, 8, 8)
        candidates = torch.cat([windows, windows.flip(-1)])
        assert (candidates == out[index]).flatten(1).all(1).any()
    unchanged = (out == images).flatten(1).all(1).float().mean()
    assert unchanged < 0.5  # augmentation really moves most images
