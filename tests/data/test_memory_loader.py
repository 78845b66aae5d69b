import pytest
import torch

from convzoo.data.memory import InMemoryLoader, crop_and_flip, draw_crops_and_flips, pad_images


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


def test_training_ranks_take_disjoint_equal_shards():
    shards = []
    for rank in range(3):
        loader = make_loader(shuffle=True, rank=rank, world_size=3, batch_size=3, drop_last=True)
        shards.append(torch.cat([labels for _, labels in loader]).tolist())
    assert all(len(shard) == 3 for shard in shards)
    seen = [label for shard in shards for label in shard]
    assert len(set(seen)) == 9


def test_evaluation_shards_hold_every_image_exactly_once():
    """Sharded evaluation sums its counts over the ranks: no image dropped, none twice."""
    shards = [torch.cat([labels for _, labels in make_loader(rank=rank, world_size=3, batch_size=2)]).tolist()
              for rank in range(3)]
    assert [len(shard) for shard in shards] == [4, 3, 3]
    assert sorted(label for shard in shards for label in shard) == list(range(10))
    assert [make_loader(rank=rank, world_size=3).num_samples for rank in range(3)] == [4, 3, 3]


def same_image_everywhere(**kwargs) -> InMemoryLoader:
    image = torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    defaults = dict(batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, augmentation="crop_flip",
                    drop_last=True)
    return InMemoryLoader(image.expand(64, -1, -1, -1).contiguous(), torch.zeros(64, dtype=torch.long),
                          **(defaults | kwargs))


def test_ranks_augment_the_same_batch_differently():
    """Each rank draws its own crops and flips; the same draws on every rank would augment a
    batch index identically across the job."""
    first_batches = [next(iter(same_image_everywhere(rank=rank, world_size=2)))[0] for rank in range(2)]
    assert not torch.equal(first_batches[0], first_batches[1])
    again = next(iter(same_image_everywhere(rank=1, world_size=2)))[0]
    assert torch.equal(again, first_batches[1]), "a rank's draws depend only on seed, epoch and rank"


def test_augmentation_is_drawn_once_per_epoch(monkeypatch):
    """Offsets and flips for the whole epoch in one draw (and one copy to the device), not a
    draw and a blocking host-to-device copy per batch."""
    loader = same_image_everywhere()
    draws = []
    for name in ("randint", "rand"):
        original = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *args, _original=original, _name=name, **kw: (
            draws.append(_name), _original(*args, **kw))[1])
    assert len(list(loader)) == len(loader) == 8
    assert sorted(draws) == ["rand", "randint"]


@pytest.mark.cuda
def test_an_augmented_epoch_never_waits_for_the_host():
    loader = same_image_everywhere(device="cuda", channels_last=True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        batches = [images for images, _ in loader]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == 8 and batches[0].is_contiguous(memory_format=torch.channels_last)


def test_drop_last_keeps_only_full_batches():
    loader = make_loader(drop_last=True)
    assert [len(labels) for _, labels in loader] == [3, 3, 3]


def test_pad_images_centres_with_zeros():
    padded = pad_images(torch.full((2, 1, 28, 28), 7, dtype=torch.uint8), 32)
    assert padded.shape == (2, 1, 32, 32)
    assert padded[:, :, 2:30, 2:30].eq(7).all() and padded.sum() == 7 * 2 * 28 * 28


def test_random_crop_flip_keeps_shape_and_content():
    images = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    offsets, flips = draw_crops_and_flips(64, 2, torch.Generator().manual_seed(0))
    out = crop_and_flip(images, 2, offsets, flips)
    assert out.shape == images.shape and out.dtype == torch.uint8
    # Each output is a shifted (and maybe mirrored) window of the zero-padded input.
    padded = torch.nn.functional.pad(images, (2,) * 4)
    for index in range(8):
        windows = padded[index].unfold(1, 8, 1).unfold(2, 8, 1).permute(1, 2, 0, 3, 4).reshape(-1, 3, 8, 8)
        candidates = torch.cat([windows, windows.flip(-1)])
        assert (candidates == out[index]).flatten(1).all(1).any()
    unchanged = (out == images).flatten(1).all(1).float().mean()
    assert unchanged < 0.5  # augmentation really moves most images
