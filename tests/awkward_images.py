"""One set of the image files users actually have, written the same way for every test
of the one decoder (``convzoo.data.image_decoding.read_image``): a 16-bit PNG, a single
and an animated GIF, a WebP, a CMYK JPEG, a palette PNG with transparency, and a text
file named ``.jpg``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

UNREADABLE = "not-an-image.jpg"


def picture(side: int, seed: int) -> np.ndarray:
    """(side, side, 3) uint8: a bright square on a darker, noisy ground, so that models'
    outputs differ from image to image."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 90, (side, side, 3), dtype=np.uint8)
    low, high = side // 4 + seed % 3, side // 2 + side // 4
    pixels[low:high, low:high] = rng.integers(150, 256, 3, dtype=np.uint8)
    return pixels


def write_awkward_images(folder: Path, side: int = 32, seed: int = 0) -> dict[str, Path]:
    """The files, by name; every one but ``UNREADABLE`` is an image convzoo must read."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    colour = Image.fromarray(picture(side, seed))
    grey = colour.convert("L")
    palette = colour.convert("P")
    files = {name: folder / name for name in (
        "grey8.png", "grey16.png", "single.gif", "animated.gif", "lossless.webp", "cmyk.jpg", "palette-alpha.png",
        UNREADABLE)}
    grey.save(files["grey8.png"])
    # The same picture at 16 bits (v * 257: 255 -> 65535), as scanners and medical tools save it.
    Image.fromarray(np.asarray(grey).astype(np.uint16) * 257).save(files["grey16.png"])
    palette.save(files["single.gif"])
    palette.save(files["animated.gif"], save_all=True, append_images=[palette.transpose(Image.Transpose.ROTATE_90)])
    colour.save(files["lossless.webp"], lossless=True)
    colour.convert("CMYK").save(files["cmyk.jpg"], quality=95)
    palette.save(files["palette-alpha.png"], transparency=0)
    files[UNREADABLE].write_text("a note saved with the wrong name\n")
    return files


def readable(files: dict[str, Path]) -> dict[str, Path]:
    return {name: path for name, path in files.items() if name != UNREADABLE}
