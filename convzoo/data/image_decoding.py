"""The one way an image file becomes pixels, for every command that reads files.

Training and evaluation on image folders, ``predict``, and every inspection command
(``explain``, ``attack``, ``visualize``, ``probe``) call ``read_image``, so a file gives
the same pixels wherever it is read: a 16-bit PNG is not "bright" in one command and
right in another, and a GIF does not have 3 channels where the model wants 1.

The rules, whatever the file holds:

- **mode**: RGB for colour models; grey for one-channel models by ITU-R 601-2 luma with
  PIL's integer weights, which keeps a grey file's values exactly (the weights sum to 1);
  palette, CMYK and grey-with-alpha become RGB first; alpha is dropped.
- **bit depth**: 16-bit samples (PNG, TIFF, PGM) are rounded to the nearest 8-bit value,
  so 65535 is white (255), as an 8-bit copy of the same picture is.
- **frames**: the first frame of an animated GIF or WebP.
- **size** is left to the caller's preprocessing (the run's resize and crop).

``torchvision.io`` decodes JPEG, PNG, GIF and WebP (libjpeg-turbo, libpng, giflib,
libwebp); PIL everything else, and any file those decoders refuse. A file neither can
read raises ``UnreadableImage`` naming it, so a command can report it, skip it, count it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from convzoo.errors import ConvzooError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")
"""Files taken as images in folders: what ``read_image`` reads (README: "Image folders")."""

TENSOR_DECODABLE = (".jpg", ".jpeg", ".png", ".gif", ".webp")
"""What ``torchvision.io.decode_image`` reads; other formats (BMP, TIFF, PPM/PGM) go through PIL."""

# torchvision 0.29 deprecates its decoders in favour of TorchCodec, warning on every image
# read; they still work, and PIL remains the fallback should they be removed.
warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision are deprecated",
                        DeprecationWarning)

LUMA_WEIGHTS = (19595, 38470, 7471)
"""ITU-R 601-2 luma (0.299, 0.587, 0.114) in 1/65536ths, as PIL's ``convert("L")``: they sum
to 65536, so a pixel with R = G = B keeps its value."""


class UnreadableImage(ConvzooError):
    """A file that is not an image either decoder reads; the message names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}. Pass a JPEG, PNG or other image file.")
        self.path, self.reason = path, reason


def is_image_file(path: str) -> bool:
    """Whether a folder's file is taken as an image (by its suffix, as ``ImageFolder`` does)."""
    return path.lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | Path, channels: int = 3, *, use_pil: bool = False) -> torch.Tensor:
    """A uint8 ``(channels, H, W)`` image (``channels`` 1 or 3) from any common image file.

    ``use_pil`` decodes every format with PIL (the ``pil`` training decoder), by the same rules.
    """
    path = str(path)
    image = None
    if not use_pil and path.lower().endswith(TENSOR_DECODABLE):
        from torchvision.io import ImageReadMode, decode_image, read_file

        try:
            # RGB whatever the file holds (grey, palette, CMYK, alpha): torchvision's GRAY mode
            # is ignored by its GIF and WebP decoders, which return RGB.
            image = decode_image(read_file(path), mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError):
            image = None  # e.g. a PNG that is really a BMP, or a codec this build lacks
    if image is None:
        image = _read_with_pil(path)
    if image.ndim == 4:  # animated GIF/WebP: (frames, C, H, W)
        image = image[0]
    image = _to_uint8(image)
    return to_grey(image) if channels == 1 else image


def readable_files(paths: list[str]) -> list[int]:
    """Indices of ``paths`` that open as images (their header read, not their pixels); each
    other one is named on stderr, with their count, for searches over a whole folder."""
    import sys

    from PIL import Image

    readable = []
    for index, path in enumerate(paths):
        try:
            with Image.open(path):
                readable.append(index)
        except Exception as error:  # noqa: BLE001 - whatever PIL raises, the file is not an image
            print(f"warning: skipped unreadable image {path} ({type(error).__name__}: {error}).", file=sys.stderr)
    if len(readable) < len(paths):
        print(f"warning: {len(paths) - len(readable)} of {len(paths)} files skipped (listed above).", file=sys.stderr)
    return readable


def to_grey(rgb: torch.Tensor) -> torch.Tensor:
    """(1, H, W) luma of a uint8 (3, H, W) image, rounded as PIL rounds it."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.int32).view(3, 1, 1)
    return ((rgb.to(torch.int32) * weights).sum(0, keepdim=True) + 32768).bitwise_right_shift(16).to(torch.uint8)


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image
    # 16-bit samples to the nearest 8-bit value (v / 257, 257 = 65535 / 255), in int32
    # because few operations take uint16 on older torch versions.
    wide = image.to(torch.int32)
    return ((wide + 128) // 257).clamp_(0, 255).to(torch.uint8)


def _read_with_pil(path: str) -> torch.Tensor:
    """(3, H, W) RGB of the file's first frame, uint8 or (16-bit files) int32."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.seek(0)
            if image.mode in ("I", "F") or image.mode.startswith("I;16"):
                # PIL's convert("RGB") clips 16-bit values at 255 (everything above is white).
                array = np.asarray(image, dtype=np.int32)
                return torch.from_numpy(array.copy()).unsqueeze(0).expand(3, -1, -1).contiguous()
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnreadableImage(path, "no such file" if not Path(path).is_file() else reason) from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
