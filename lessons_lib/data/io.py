"""Reading dermoscopy images and lesion masks, with errors that name the file and the fix.

Every reader here turns the many ways a
download can go wrong (truncated JPEGs, RGB or 16-bit masks, EXIF-rotated photographs,
decompression bombs) into a :class:`~lessons_lib.errors.DataError`, or handles the case when
the fix is unambiguous (see the README's "Data" section for the list).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lessons_lib.errors import DataError
from lessons_lib.masks import binarise

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

_REDOWNLOAD = "re-download or re-extract this file from the dataset archive"


def open_image(path: Path) -> Image.Image:
    """Open ``path`` lazily, refusing files over PIL's decompression-bomb limit."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path, "check the dataset root and layout")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb(path, str(err)) from None
    except UnidentifiedImageError:
        raise DataError(
            "not a readable image (unknown or corrupt format)", path, _REDOWNLOAD
        ) from None
    except OSError as err:
        raise DataError(f"cannot open image ({err})", path, _REDOWNLOAD) from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and im.width * im.height > limit:
        raise _bomb(path, f"{im.width}x{im.height} pixels exceeds the limit of {limit}")
    return im


def _bomb(path: Path, detail: str) -> DataError:
    return DataError(
        f"image is larger than PIL's decompression-bomb limit ({detail})",
        path,
        "if you trust this file, raise the limit before loading: "
        "`PIL.Image.MAX_IMAGE_PIXELS = <pixels>` (or None to disable the check)",
    )


def decode_image(im: Image.Image, path: Path) -> Image.Image:
    """Decode an opened image's pixels; a truncated or corrupt file is a :class:`DataError`."""
    try:
        im.load()
    except OSError as err:  # truncated or corrupt data
        raise DataError(f"image data is truncated or corrupt ({err})", path, _REDOWNLOAD) from None
    return im


def exif_orientation(im: Image.Image) -> int:
    """Return the EXIF orientation tag (1 = as stored) of an opened image."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # malformed EXIF blocks are common and harmless: treat as unrotated
        return 1


def to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """Convert a decoded image to RGB, or raise when the conversion would guess colours.

    Greyscale (``L``, ``I;16``) images are replicated to three channels and RGBA images lose an
    opaque alpha channel; CMYK and palette images with transparency are refused, since their
    RGB colours depend on a colour profile the file may not carry.
    """
    if im.mode == "RGB":
        return im
    if im.mode in ("L", "LA", "1"):
        return im.convert("RGB")
    if im.mode.startswith("I"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr / top * 255).round().astype(np.uint8)).convert("RGB")
    if im.mode == "RGBA":
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            raise DataError(
                "image has a transparent alpha channel",
                path,
                "flatten it onto a background and save it as an RGB JPEG or PNG",
            )
        return im.convert("RGB")
    if im.mode == "P":
        return im.convert("RGB")
    raise DataError(
        f"image has colour mode {im.mode!r}; the course reads RGB dermoscopy images",
        path,
        "convert it to sRGB into another folder and use that copy instead of this file (a "
        "converted copy beside it would give two images one name), e.g. `mkdir -p srgb && "
        'python -c "from PIL import Image; '
        f"Image.open('{path.name}').convert('RGB').save('srgb/{path.stem}.png')\"` "
        "(check the colours) or ImageMagick's `convert in -colorspace sRGB srgb/out.png`",
    )


def read_image(path: Path | str, apply_exif: bool = False) -> np.ndarray:
    """Read a dermoscopy image as an RGB array.

    Args:
        path: Image file (JPEG, PNG, BMP or TIFF).
        apply_exif: Rotate by the EXIF orientation tag. Masks are drawn on the stored pixel
            grid, so the loaders only do this when :func:`read_pair` finds that the mask
            matches the rotated image.

    Returns:
        ``uint8`` array of shape ``(H, W, 3)``.

    Raises:
        DataError: unreadable, truncated, over-large or non-RGB-convertible files.
    """
    path = Path(path)
    im = decode_image(open_image(path), path)
    if apply_exif:
        im = ImageOps.exif_transpose(im)
    return np.asarray(to_rgb(im, path))


def mask_from_array(arr: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Binarise a mask array as the ISIC scorer does.

    Rules: ``bool`` arrays are used as they are; arrays whose values are all 0 or 1 are
    0/1-valued masks; 8-bit masks are foreground where the value is > 128 (the official
    ``isic-challenge-scoring`` rule); 16-bit masks must be binary (two values, 0 and another).

    Args:
        arr: ``(H, W)`` mask array.
        path: The file it came from, for error messages.

    Returns:
        ``bool`` array of shape ``(H, W)``.
    """
    if arr.ndim != 2:
        raise DataError(f"mask must be 2-D, got shape {arr.shape}", path, "save it as greyscale")
    if arr.dtype in (np.bool_, np.uint8) or (arr.size and int(arr.max()) <= 1):
        return binarise(arr, str(path))
    values = np.unique(arr)
    if values.size == 2 and values[0] == 0:
        return arr == values[1]
    raise DataError(
        f"{arr.dtype} mask with {values.size} distinct values is not binary",
        path,
        "save the mask as an 8-bit greyscale PNG with 0 for skin and 255 for lesion",
    )


def read_mask(path: Path | str) -> np.ndarray:
    """Read a lesion mask as a boolean array (``True`` = lesion).

    Greyscale 8-bit masks are binarised at > 128 like the ISIC scorer; 0/1-valued and 1-bit
    masks are recognised. RGB/RGBA masks are accepted when their colour channels are equal
    (and alpha opaque) and 16-bit masks when binary, since the fix is then unambiguous; any
    other colour mask is an error.

    Returns:
        ``bool`` array of shape ``(H, W)``.
    """
    path = Path(path)
    im = decode_image(open_image(path), path)
    if im.mode == "1":
        return np.asarray(im, dtype=bool)
    if im.mode in ("RGB", "RGBA", "P", "LA"):
        arr = np.asarray(im.convert("RGBA" if im.mode != "LA" else "LA"))
        colour, alpha = arr[..., :-1], arr[..., -1]
        if alpha.min() < 255 or not (colour == colour[..., :1]).all():
            raise DataError(
                f"mask has colour mode {im.mode} with differing channels or transparency",
                path,
                "save the mask as an 8-bit greyscale PNG with 0 for skin and 255 for lesion",
            )
        arr = colour[..., 0]
    elif im.mode in ("L", "I;16", "I;16B", "I;16L", "I", "I;16N"):
        arr = np.asarray(im)
    else:
        raise DataError(f"mask has unsupported mode {im.mode!r}", path, "save it as greyscale")
    return mask_from_array(arr, path)


def read_pair(image_path: Path | str, mask_path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read an image and its mask and check that they match.

    The EXIF orientation of a photograph is applied only when the mask matches the rotated
    image and not the stored one; otherwise the stored pixels are used (the ISIC masks are
    drawn on them).

    Returns:
        ``(image, mask)``: ``uint8 (H, W, 3)`` and ``bool (H, W)``.

    Raises:
        DataError: either file is unreadable, or their sizes differ (naming both files).
    """
    image_path, mask_path = Path(image_path), Path(mask_path)
    mask = read_mask(mask_path)
    with open_image(image_path) as im:
        apply = check_match(im, mask.shape, image_path, mask_path)
    return read_image(image_path, apply_exif=apply), mask


def check_match(
    im: Image.Image, mask_shape: tuple[int, ...], image_path: Path, mask_path: Path
) -> bool:
    """Check that an opened image and its mask have one size; say whether to apply EXIF.

    Returns:
        ``True`` when the image's EXIF rotation must be applied for it to match its mask.

    Raises:
        DataError: the sizes differ (naming both files).
    """
    mh, mw = mask_shape[:2]
    rotated = exif_orientation(im) in (5, 6, 7, 8)
    if (mw, mh) == im.size:
        return False
    if rotated and (mh, mw) == im.size:
        return True
    raise DataError(
        f"mask {mask_path} is {mw}x{mh} but its image is {im.width}x{im.height}",
        image_path,
        "the mask must have the image's exact size: re-extract both files, or resize the mask "
        "with nearest-neighbour interpolation if it was saved at another resolution",
    )
