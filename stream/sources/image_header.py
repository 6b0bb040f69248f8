"""The size an image file's header declares, read before anything decodes the file.

A few KiB of PNG can declare an image of gigapixels, which OpenCV allocates and fills before it
finds the data short (a 656 KB PNG of 15000 x 15000 px took 5.8 s and 1.4 GB to decode). Pillow
(scikit-image's dependency) reads the header alone, and refuses past its decompression-bomb limit
(2 x ``Image.MAX_IMAGE_PIXELS``, about 179 million pixels: more than any camera's photo). Used by
image files and folders (``stream.sources.image_folder``) and page uploads (``stream.server``).
"""

from __future__ import annotations

import io
import warnings


class TooManyPixels(ValueError):
    """The header declares more pixels than Pillow's decompression-bomb limit."""


def declared_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` in pixels as the image's header declares them; None when Pillow cannot
    read the header (then a decoder decides, and fails on its own).

    Raises:
        TooManyPixels: past Pillow's decompression-bomb limit; the message gives the count.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns from ~89 M pixels and refuses from twice that: the warning is the
            # caller's to judge, from the size returned.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:
        raise TooManyPixels(str(error)) from error
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return int(width), int(height)
