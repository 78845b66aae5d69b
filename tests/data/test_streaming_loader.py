"""The streaming loaders of ``imagefolder:`` datasets: workers, shards, seeds and memory format."""

import os

import pytest
import torch

from convzoo.data import build_loaders, default_num_workers, get_dataset_spec


def folder_loaders(image_folder, **kwargs):
    spec = get_dataset_spec(f"imagefolder:{image_folder}", image_size=16)
    values = dict(batch_size=2, eval_batch_size=4, device="cpu", num_workers=0)
    return build_loaders(spec, **(values | kwargs))


@pytest.mark.parametrize(("cores", "processes", "workers"), [(1, 1, 0), (2, 1, 1), (16, 1, 4), (4, 2, 1), (64, 8, 4)])
def test_default_workers_fit_the_cores_available(monkeypatch, cores, processes, workers):
    """Never more workers than cores (PyTorch warns, and they only queue), one core left for
    the training loop, the cores shared among the processes torchrun starts on the node."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    assert default_num_workers() == workers


def test_image_folder_loaders_take_the_default_workers(monkeypatch, image_folder):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    loaders = folder_loaders(image_folder, num_workers=None)
    assert loaders.train.loader.num_workers == loaders.test.loader.num_workers == 1


def test_image_folder_loaders_count_their_images(image_folder):
    loaders = folder_loaders(image_folder)
    assert (loaders.train.num_samples, loaders.test.num_samples) == (16, 6)
    assert len(loaders.train) == 8


def test_streamed_batches_come_in_the_models_memory_format(image_folder):
    """A channels-last model (every CUDA run) must get channels-last images, or each
    convolution converts them first."""
    images, labels = next(iter(folder_loaders(image_folder, channels_last=True).train))
    assert images.shape == (2, 3, 16, 16) and images.is_contiguous(memory_format=torch.channels_last)
    images, _ = next(iter(folder_loaders(image_folder).test))
    assert images.is_contiguous()


def labels_in_order(loader, epoch):
    loader.set_epoch(epoch)
    return torch.cat([labels for _, labels in loader]).tolist()


def test_streamed_order_follows_the_runs_seed(image_folder):
    """The sampler draws from the run's seed (under torchrun it used seed 0 whatever the run's was)."""
    def shard(seed):
        return folder_loaders(image_folder, seed=seed, augment=False, rank=1, world_size=2).train

    orders = {seed: labels_in_order(shard(seed), 0) for seed in range(4)}
    assert len({tuple(order) for order in orders.values()}) > 1
    again = shard(2)
    assert labels_in_order(again, 0) == orders[2]


def test_streamed_shards_take_every_test_image_once(image_folder):
    shards = [folder_loaders(image_folder, rank=rank, world_size=4) for rank in range(4)]
    assert [shard.train.num_samples for shard in shards] == [4] * 4
    assert sum(shard.test.num_samples for shard in shards) == 6
    assert all(shard.test.world_size == 4 for shard in shards)
