"""Per-image TrivialAugment, RandAugment, AutoAugment and random erasing on batches
(data/batched_augment.py): torchvision's ops and magnitudes, a draw per image, seeded."""

import pytest
import torch
from torchvision.transforms import v2

from convzoo.config import parse_auto_augment
from convzoo.data.batched_augment import (
    AUTOAUGMENT_IMAGENET, COLOUR_OPS, GEOMETRIC, OPS, SIGNED, EpochPolicy, affine, draw_erasing, draw_policy, erase,
    inverse_affine, magnitude_bins, op_parameters,
)
from convzoo.data.memory import InMemoryLoader


@pytest.fixture(autouse=True)
def single_threaded(one_thread):
    yield


def photos(count: int, channels: int, size: int = 20, seed: int = 0) -> torch.Tensor:
    """uint8 images with smooth shapes and some noise, more like photos than pure noise."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = 255 * torch.rand(count, channels, 1, 1, generator=generator) * ramp[:, None] * ramp[None, :]
    noise = 60 * torch.rand(count, channels, size, size, generator=generator)
    return (base + noise).clamp(0, 255).to(torch.uint8)


def torchvision_op(image: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """torchvision's own op (``transforms/v2/_auto_augment.py``), as its policies apply it."""
    policy = v2.TrivialAugmentWide()
    return policy._apply_image_or_video_transform(image, name, magnitude, interpolation=policy.interpolation,
                                                  fill=policy._fill)


def batched_op(images: torch.Tensor, name: str, magnitudes: torch.Tensor) -> torch.Tensor:
    ops = torch.full((len(images),), OPS.index(name))
    if name in GEOMETRIC:
        return affine(images, inverse_affine(ops, magnitudes, *images.shape[-2:]))
    return COLOUR_OPS[name](images, op_parameters(ops, magnitudes).float())


def assert_close_to_torchvision(ours: torch.Tensor, theirs: torch.Tensor, geometric: bool) -> None:
    """Colour ops: exact (the same float32 arithmetic). Geometric ops (exact here too): the
    sampling grid's last bit may differ on other hardware, and nearest sampling then picks
    the neighbouring pixel where a sample falls on a pixel boundary, so up to 1 % may differ."""
    if geometric:
        assert (ours != theirs).float().mean() <= 0.01
    else:
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("space", ["wide", "standard"])
def test_magnitude_bins_are_torchvisions(space):
    reference = {"wide": v2.TrivialAugmentWide, "standard": v2.RandAugment}[space]._AUGMENTATION_SPACE
    for num_bins in (31, 10):
        table = magnitude_bins(space == "wide", num_bins, 24, 20)
        for name, (magnitudes, signed) in reference.items():
            expected = magnitudes(num_bins, 24, 20)
            assert torch.equal(table[OPS.index(name)], torch.zeros(num_bins, dtype=torch.float64) if expected is None
                               else expected.double()), name
            assert (name in SIGNED) == signed


def test_the_autoaugment_policy_is_torchvisions_imagenet_policy():
    reference = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)._policies
    assert AUTOAUGMENT_IMAGENET == tuple(tuple((op, p, bin_ or 0) for op, p, bin_ in pair) for pair in reference)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", OPS[1:])
def test_each_op_matches_torchvision_on_single_images(name, channels):
    images = photos(8, channels)
    table = magnitude_bins(True, 31, 20, 20)[OPS.index(name)]
    # Eight magnitudes across the range, negated where the op is signed.
    magnitudes = table[torch.linspace(0, 30, 8).long()] * torch.tensor([1.0, -1.0] * 4 if name in SIGNED else [1.0] * 8,
                                                                        dtype=torch.float64)
    ours = batched_op(images, name, magnitudes)
    assert ours.dtype == torch.uint8 and ours.shape == images.shape
    theirs = torch.stack([torchvision_op(image, name, float(m)) for image, m in zip(images, magnitudes)])
    assert_close_to_torchvision(ours, theirs, name in GEOMETRIC)


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment:2:9", "randaugment:3:30", "autoaugment"])
@pytest.mark.parametrize("channels", [1, 3])
def test_a_batch_grouped_by_op_is_each_image_through_its_own_draws(policy, channels):
    """The epoch's plan sorts each batch by op and applies each op once; every image must come
    out as torchvision's ops applied to it alone, in its drawn order."""
    images = photos(40, channels)
    parsed = parse_auto_augment(policy)
    ops, magnitudes = draw_policy(parsed, 40, 20, 20, torch.Generator().manual_seed(5))
    plan = EpochPolicy.draw(parsed, 40, 16, 20, 20, torch.Generator().manual_seed(5))
    ours = torch.cat([plan.apply(images[start:start + 16], batch) for batch, start in enumerate(range(0, 40, 16))])
    for image, out, image_ops, image_magnitudes in zip(images, ours, ops, magnitudes):
        for op, magnitude in zip(image_ops.tolist(), image_magnitudes.tolist()):
            image = torchvision_op(image, OPS[op], magnitude)
        assert_close_to_torchvision(out, image, geometric=bool(set(image_ops.tolist()) & {1, 2, 3, 4, 5}))


def test_two_identical_images_in_one_batch_are_augmented_differently():
    images = photos(1, 3).expand(64, -1, -1, -1).contiguous()
    plan = EpochPolicy.draw(parse_auto_augment("trivialaugment"), 64, 64, 20, 20, torch.Generator().manual_seed(0))
    out = plan.apply(images, 0)
    distinct = {tuple(image.flatten().tolist()) for image in out}
    assert len(distinct) > 40  # 14 ops x 31 magnitudes x 2 signs; Identity and repeats aside


def test_ops_are_drawn_uniformly_per_image():
    ops, magnitudes = draw_policy(("trivialaugment", 1, 0), 28_000, 32, 32, torch.Generator().manual_seed(0))
    counts = torch.bincount(ops[:, 0], minlength=len(OPS))
    assert counts[-1] == 0 and (counts[:-1] - 2000).abs().max() < 200  # Invert is AutoAugment's alone
    rotations = magnitudes[ops[:, 0] == OPS.index("Rotate"), 0]
    assert rotations.min() == -135 and rotations.max() == 135 and (rotations < 0).float().mean().sub(0.5).abs() < 0.05


def test_the_in_memory_loader_repeats_its_draws_and_keeps_dtypes_and_ranges():
    images, labels = photos(96, 1, 28), torch.arange(96) % 10

    def epoch(seed, start=0, **options):
        loader = InMemoryLoader(images, labels, batch_size=32, mean=(0.5,), std=(0.25,), shuffle=True, seed=seed,
                                drop_last=True, **options)
        loader.set_epoch(1, start)
        return [batch for batch, _ in loader]

    for policy in ("trivialaugment", "randaugment:2:9", "autoaugment"):
        augmented = epoch(0, auto_augment=parse_auto_augment(policy))
        assert all(torch.equal(a, b) for a, b in zip(augmented, epoch(0, auto_augment=parse_auto_augment(policy))))
        assert torch.equal(augmented[2], epoch(0, start=2, auto_augment=parse_auto_augment(policy))[0])
        assert not torch.equal(augmented[0], epoch(1, auto_augment=parse_auto_augment(policy))[0])
        plain = epoch(0)
        assert not torch.equal(augmented[0], plain[0])
        # uint8 in, uint8 out: the normalised values stay those of pixel values 0-255.
        pixels = torch.cat(augmented) * 0.25 * 255 + 0.5 * 255
        assert augmented[0].dtype == torch.float32 and torch.allclose(pixels, pixels.round(), atol=1e-3)
        assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
    erased = epoch(0, random_erasing=1.0)
    assert torch.equal(erased[1], epoch(0, random_erasing=1.0)[1])
    assert torch.equal(erased[2], epoch(0, start=2, random_erasing=1.0)[0])
    assert not torch.equal(erased[0], plain[0])


def test_random_erasing_boxes_follow_the_paper():
    boxes = draw_erasing(20_000, 0.5, 32, 24, torch.Generator().manual_seed(0))
    top, left, height, width = boxes.T
    erased = height > 0
    assert abs(erased.float().mean() - 0.5) < 0.02
    area = (height * width)[erased] / (32 * 24)
    assert area.min() >= 0.01 and area.max() <= 0.36  # 2-33 %, up to rounding each side
    assert (area.mean() - (0.02 + 0.33) / 2).abs() < 0.03
    ratio = (height / width)[erased]
    assert ratio.min() >= 0.25 and ratio.max() <= 1 / 0.25
    assert (top + height <= 32).all() and (left + width <= 24).all() and (height < 32).all() and (width < 24).all()


def test_random_erasing_fills_only_its_box_with_standard_normal_noise():
    images = torch.full((64, 3, 32, 32), 7.0)
    boxes = draw_erasing(64, 1.0, 32, 32, torch.Generator().manual_seed(1))
    out = erase(images, boxes, torch.Generator().manual_seed(2))
    assert torch.equal(out, erase(images, boxes, torch.Generator().manual_seed(2)))
    changed = out != 7.0
    assert torch.equal(changed.sum(dim=(1, 2, 3)), 3 * boxes[:, 2] * boxes[:, 3])
    noise = out[changed]
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05


@pytest.mark.parametrize("text, parsed", [("trivialaugment", ("trivialaugment", 1, 0)),
                                          ("randaugment", ("randaugment", 2, 9)),
                                          ("RandAugment:3:15", ("randaugment", 3, 15)),
                                          ("autoaugment", ("autoaugment", 1, 0))])
def test_policies_parse(text, parsed):
    assert parse_auto_augment(text) == parsed


@pytest.mark.parametrize("text", ["foo", "randaugment:2", "randaugment:0:9", "randaugment:2:31", "trivialaugment:1:2"])
def test_bad_policies_are_refused(text):
    with pytest.raises(ValueError, match="randaugment"):
        parse_auto_augment(text)



def test_repeated_augmentation_deals_each_image_to_consecutive_ranks_augmented_apart():
    """Two ranks, each image twice in a row: rank 0 and rank 1 train on the same images in the
    same steps, each augmenting them its own way, and each rank's epoch keeps its length."""
    images, labels = photos(128, 3, 16), torch.arange(128)

    def rank_batches(rank, world_size, repeats):
        loader = InMemoryLoader(images, labels, batch_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True,
                                drop_last=True, rank=rank, world_size=world_size, repeats=repeats,
                                augmentation="crop_flip", auto_augment=parse_auto_augment("trivialaugment"))
        loader.set_epoch(2)
        return len(loader), list(loader)

    steps, rank0 = rank_batches(0, 2, 2)
    _, rank1 = rank_batches(1, 2, 2)
    assert steps == rank_batches(0, 2, 1)[0] == 4
    for (images0, labels0), (images1, labels1) in zip(rank0, rank1):
        assert torch.equal(labels0, labels1) and not torch.equal(images0, images1)
    seen = torch.cat([labels for _, labels in rank0])
    assert len(seen.unique()) == 64  # half the images, each on both ranks

    _, alone = rank_batches(0, 1, 2)  # one process: the copies side by side in one batch
    for batch, labels in alone:
        assert torch.equal(labels[0::2], labels[1::2])
        assert any(not torch.equal(a, b) for a, b in zip(batch[0::2], batch[1::2]))


def test_repeated_augmentation_samples_each_copy_of_a_folder_image_with_its_own_seed():
    from convzoo.data.resumable import ResumableSampler, SeededPerSample

    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, index):
            return index, torch.rand(()).item()

    dataset = SeededPerSample(Draws(), seed=0)
    shards = []
    for rank in (0, 1):
        sampler = ResumableSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0, drop_last=True, repeats=2)
        sampler.set_epoch(1)
        shards.append([dataset[key] for key in sampler])
    assert len(shards[0]) == len(shards[1]) == 5
    for (index0, draw0), (index1, draw1) in zip(*shards):
        assert index0 == index1 and draw0 != draw1
    sampler.set_epoch(1, start=2)
    assert [dataset[key] for key in sampler] == shards[1][2:]


@pytest.mark.cuda
def test_the_plan_and_erasing_give_the_cpus_images_on_a_gpu():
    images = photos(64, 3, 24)
    plan = EpochPolicy.draw(parse_auto_augment("randaugment:2:15"), 64, 32, 24, 24, torch.Generator().manual_seed(0))
    on_cpu = torch.cat([plan.apply(images[:32], 0), plan.apply(images[32:], 1)])
    on_gpu = plan.to(torch.device("cuda"))
    gpu_images = images.cuda()
    on_cuda = torch.cat([on_gpu.apply(gpu_images[:32], 0), on_gpu.apply(gpu_images[32:], 1)]).cpu()
    assert on_cuda.dtype == torch.uint8 and (on_cuda != on_cpu).float().mean() <= 0.01
    boxes = draw_erasing(64, 1.0, 24, 24, torch.Generator().manual_seed(0)).cuda()
    erased = erase(gpu_images.float(), boxes, torch.Generator("cuda").manual_seed(0))
    assert torch.equal((erased != gpu_images.float()).sum(dim=(1, 2, 3)).cpu(), 3 * (boxes[:, 2] * boxes[:, 3]).cpu())
