"""Decoding photos: EXIF orientation, colour modes, first frame, pixel limit, ICC profile, JPEG DCT
scaling, HEIC/HEIF (with the optional pillow-heif), and the face regions the photo's XMP metadata marks.

Everything downstream sees an upright image in one of four modes (L, LA, RGB, RGBA); box coordinates
refer to the upright photo at full size (`Decoded.size`), whatever the scale it was decoded at. The
model gets `Decoded.rgb()` (alpha flattened on white); writers get `Decoded.image` so PNG/WebP outputs
keep transparency.

Decode scales. A JPEG can be decoded at 1/2, 1/4 or 1/8 of its size for a fraction of the cost (DCT
scaling). The model reads the photo at 1/k, k = `model_reduction(size)`, chosen from the photo's size
alone, so a photo's crops never depend on the outputs asked; an output is rendered from a decode that
covers it (`covering_reduction`), never enlarged from a smaller one, and a full-size crop from
full-resolution pixels. Where k is 4 or 8 (a short side of 2,048 px or more: phone and camera photos)
the JPEG is decoded once at 1/(k/2) and the model reads that averaged 2x2 (`Decoded.finer` keeps the
finer decode): thumbnails of such photos mostly need the finer scale anyway, and a second decode would
pay the entropy decoding, most of a decode's cost, twice.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import warnings
from dataclasses import dataclass, field, replace

from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .paths import HEIF_EXTENSIONS, HEIF_MISSING
from .render import box_onto
from .xmp import SWAPS_AXES, face_regions, xmp_packet

# The model's input has a 256-px short side; it reads JPEGs at the smallest scale whose short side is
# still at least twice that (FCDB's and the reference's photos, 800 px or less, are read whole).
MODEL_SHORT_SIDE = 512
REDUCTIONS = (8, 4, 2)  # the DCT scales Pillow's JPEG draft mode offers, besides 1
MODEL = "model"  # open_image(reduction=MODEL): the model's decode scale, from the photo's size

# Above the largest camera sensors (~102 MP) but far below what would exhaust memory; --max-pixels changes it.
DEFAULT_MAX_PIXELS = 150_000_000

ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
WHITE = 255

# check_pixels() decides with a message that names --max-pixels; Pillow's own warning would only repeat
# it less clearly (its hard error above 2x its limit still applies unless a caller lifts MAX_IMAGE_PIXELS).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def batch_pillow() -> None:
    """Pillow's process-wide settings for a batch of photos (the command line's run, its workers):
    - no MAX_IMAGE_PIXELS: `check_pixels` decides, with a message that names --max-pixels;
    - one freed memory block kept for the next image (unless $PILLOW_BLOCKS_MAX is set). Pillow frees
      every block of an image it drops by default, so each large decode, turn and crop of a photo got
      freshly mapped, zeroed pages from the system; with one block kept, the allocator reuses what the
      previous image left. Pixels are the same either way."""
    Image.MAX_IMAGE_PIXELS = None
    if "PILLOW_BLOCKS_MAX" not in os.environ:
        Image.core.set_blocks_max(1)


@dataclass
class Decoded:
    """An upright photo ready for scoring and writing.

    `size` is the upright size at full resolution; `image` is smaller when the JPEG was decoded at a
    reduced scale (`reduction` > 1; `box_in_image` maps boxes onto it). `icc_profile` is the source's
    profile, kept for writing (None when the pixels were converted to sRGB here, e.g. from CMYK).
    `faces`: the face regions its XMP metadata marks (`io.xmp`), rows x1, y1, x2, y2 in fractions of
    the upright photo.
    """

    image: Image.Image
    size: tuple[int, int]
    format: str | None
    icc_profile: bytes | None
    orientation: int = 1
    faces: object = field(default=None, repr=False)  # numpy [F, 4], or None when the photo marks none
    reduction: int = 1
    # The file read: (size, modification time in ns); not its device or inode, which differ between
    # the nodes of a cluster that share the file (`--engine ray` may decode and write on two of them).
    stamp: tuple = ()
    # The model's decode of a photo of 2,048 px or more on its short side: the decode at 1/(reduction/2)
    # that `image` is the 2x2 average of (outputs it covers are rendered from it).
    finer: "Decoded | None" = field(default=None, repr=False)

    def box_in_image(self, box) -> tuple[float, float, float, float]:
        """A box in photo pixels (`size`) as a box in the pixels of `image` (`render.box_onto`)."""
        return box_onto(box, self.size, self.image.size)

    def rgb(self) -> Image.Image:
        """The image as RGB with any transparency composited on white (what the model scores)."""
        return to_rgb(self.image)


def open_image(
    path: "str | os.PathLike[str]",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    reduction: "int | str" = 1,
) -> Decoded:
    """Decode the first frame of `path` upright. Raises InputError with a one-line reason.

    `reduction`: a JPEG is decoded at 1/reduction of its size (1, 2, 4 or 8; DCT scaling; other
    formats always whole); `MODEL`: at the scale the model reads it (`model_reduction`).
    """
    if reduction != MODEL and reduction not in (1, *REDUCTIONS):
        raise ValueError(f"reduction must be 1, 2, 4, 8 or {MODEL!r}, got {reduction!r}")
    heif = os.path.splitext(os.fspath(path))[1].lower() in HEIF_EXTENSIONS
    try:
        if heif and not heif_support():
            raise InputError(HEIF_MISSING)
        with open_regular_file(path) as fh:
            st = os.fstat(fh.fileno())
            stamp = (st.st_size, st.st_mtime_ns)
            try:
                return _decode(fh, max_pixels=max_pixels, reduction=reduction, stamp=stamp)
            except UnidentifiedImageError:
                if heif or not heif_support():  # a HEIC under another name: pillow-heif may know it
                    raise
                fh.seek(0)
                return _decode(fh, max_pixels=max_pixels, reduction=reduction, stamp=stamp)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"refused as a possible decompression bomb ({exc}); raise --max-pixels if you trust it") from None
    except UnidentifiedImageError:
        raise InputError("not an image file (or a format Pillow cannot read)") from None
    except IsADirectoryError:
        raise InputError("is a directory") from None
    except OSError as exc:
        raise InputError(_os_reason(exc)) from None
    except MemoryError:
        raise InputError("not enough memory to decode this image") from None
    except Exception as exc:  # Pillow plugins raise SyntaxError, ValueError, struct.error... on broken files
        raise InputError(f"cannot decode image: {type(exc).__name__}: {exc}") from None


@functools.cache
def heif_support() -> bool:
    """Whether HEIC/HEIF photos can be read: pillow-heif is installed (`pip install 's2ccrop[heif]'`).
    Its Pillow plugin is registered on the first call, when the first such photo is decoded, so runs
    without one never pay for its import."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def open_regular_file(path: "str | os.PathLike[str]"):
    """Open `path` for reading only if it is a regular file; raises InputError for anything else.

    A plain open() of a FIFO named photo.jpg blocks until a writer appears, which would hang a batch
    forever; O_NONBLOCK makes that open return at once, and fstat on the opened descriptor (not a
    second lookup of the name) decides. Device files are refused as well: they have no end.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(mode):
            raise InputError("not a regular file (a pipe, socket or device)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _decode(fh, *, max_pixels: int | None, reduction: "int | str", stamp: tuple) -> Decoded:
    img = Image.open(fh)
    check_pixels(img.size, max_pixels)
    fmt = img.format
    orientation = read_orientation(img)
    full = img.size
    k = 1
    if fmt == "JPEG":
        k = model_reduction(full) if reduction == MODEL else int(reduction)
    averaged = reduction == MODEL and k >= 4  # decoded at 1/(k/2), then averaged 2x2 for the model
    read = k // 2 if averaged else k  # the scale decoded
    if read > 1:
        # draft() picks the largest DCT scale s with size // s >= the size asked: asking size // s gives s.
        img.draft(img.mode if img.mode in ("L", "RGB") else None, (full[0] // read, full[1] // read))
        if img.size != reduced_size(full, read):  # never with Pillow's draft: fail rather than mis-scale boxes
            raise RuntimeError(f"JPEG draft gave {img.size} for 1/{read} of {full}")
    icc = img.info.get("icc_profile") or None
    img.load()  # decode now, inside the error handling, and only frame 0 of an animation
    faces = marked_faces(img, orientation)
    img, icc = normalise_mode(img, icc)
    if orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[orientation])
        full = (full[1], full[0]) if orientation in SWAPS_AXES else full
    decoded = Decoded(image=img, size=full, format=fmt, icc_profile=icc, orientation=orientation, faces=faces,
                      reduction=read, stamp=stamp)
    if averaged:  # the upright decode averaged 2x2: the size of a 1/k decode (both round up)
        return replace(decoded, image=img.reduce(2), reduction=k, finer=decoded)
    return decoded


def reduced_size(size: tuple[int, int], k: int) -> tuple[int, int]:
    """The size of a JPEG of `size` decoded at 1/k (libjpeg rounds up)."""
    return -(-size[0] // k), -(-size[1] // k)


def model_reduction(size: tuple[int, int]) -> int:
    """The scale 1/k at which the model reads a JPEG of `size`: the smallest DCT scale whose short side
    is still at least MODEL_SHORT_SIDE (1 for photos under twice that). For k of 4 or 8 it is decoded at
    1/(k/2) and averaged 2x2 (the module's docstring says why)."""
    for k in REDUCTIONS:
        if min(reduced_size(size, k)) >= MODEL_SHORT_SIDE:
            return k
    return 1


def covering_reduction(size: tuple[int, int], outputs, upto: int = REDUCTIONS[0]) -> int:
    """The largest k ≤ `upto` (1, 2, 4, 8) at which a decode of a photo of `size` covers every output:
    each (box, (w, h)), box xyxy in photo pixels, has at least w × h decoded pixels across its box."""
    for k in (*REDUCTIONS, 1):
        if k > upto or min(size) < k:
            continue
        (dw, dh) = reduced_size(size, k)
        # box width × dw / W >= w, in integers where the box is (full-size crops: exactly at k = 1)
        if all((box[2] - box[0]) * dw >= w * size[0] and (box[3] - box[1]) * dh >= h * size[1]
               for box, (w, h) in outputs):
            return k
    return 1


def marked_faces(img: Image.Image, orientation: int):
    """The face regions of the XMP packet of an opened image (`io.xmp.face_regions`), in fractions of
    the upright photo; None when it has none. A packet that cannot be read is a warning, not an error.
    pillow-heif turns HEIC photos upright as it decodes and keeps their EXIF orientation aside
    ("original_orientation"): the stored regions still need it."""
    packet = xmp_packet(img)
    if not packet:
        return None
    stored = img.info.get("original_orientation", orientation)
    size = img.size
    if stored in SWAPS_AXES and stored != orientation:  # pillow-heif already turned the pixels
        size = (size[1], size[0])
    try:
        faces = face_regions(packet, int(stored) if stored else 1, stored_size=size)
    except ValueError as exc:
        warnings.warn(f"face regions in the XMP metadata ignored: {exc}", stacklevel=2)
        return None
    return faces if len(faces) else None


def check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise InputError(f"image has no pixels ({w}x{h})")
    if max_pixels and w * h > max_pixels:
        size, limit = _pixel_count(w * h), _pixel_count(max_pixels)
        if size == limit:  # 150.0 MP above 150.0 MP reads as nonsense: give the exact counts
            size, limit = f"{w * h:,} pixels", f"{max_pixels:,} pixels"
        raise InputError(
            f"image is {w}x{h} = {size}, above the limit of {limit} "
            "(possible decompression bomb); raise it with --max-pixels if you trust this file"
        )


def _pixel_count(n: int) -> str:
    return f"{n / 1e6:.1f} MP" if n >= 1_000_000 else f"{n:,} pixels"


def read_orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8; a missing or broken EXIF block means 1 (as cameras and browsers treat it)."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
        value = int(value)
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def normalise_mode(img: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Map any Pillow mode onto L, LA, RGB or RGBA; returns the profile that still describes the pixels."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return img, icc
    if mode == "CMYK":
        return _cmyk_to_rgb(img, icc)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_depth_to_l(img), icc
    if mode == "1":
        return img.convert("L"), icc
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB"), icc
    if mode in ("RGBa", "La"):
        return img.convert("RGBA" if mode == "RGBa" else "LA"), icc
    try:
        return img.convert("RGB"), None
    except ValueError:
        raise InputError(f"unsupported colour mode {mode}") from None


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    # A CMYK profile cannot describe RGB pixels: convert through it to sRGB when we can, then drop it.
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB"), None
        except Exception:
            pass  # a broken profile: fall back to Pillow's naive conversion
    return img.convert("RGB"), None


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16-bit values instead of scaling them (a white-washed photo).
    import numpy as np

    arr = np.asarray(img)
    if img.mode == "F":
        top = float(arr.max()) if arr.size else 1.0
        scale = 255.0 if top <= 1.0 else 255.0 / max(top, 255.0)
        out = np.clip(arr * scale, 0, 255)
    else:
        out = np.clip(arr.astype(np.int64) >> 8, 0, 255)
    return Image.fromarray(out.astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB view of an L/LA/RGB/RGBA image; transparent areas become white (what a viewer shows on paper)."""
    flat = flatten(img)
    return flat if flat.mode == "RGB" else flat.convert("RGB")


def flatten(img: Image.Image) -> Image.Image:
    """Drop alpha by compositing on white, keeping grey images grey (L) for smaller JPEGs."""
    if img.mode not in ("LA", "RGBA"):
        return img
    base_mode = img.mode[:-1]
    white = WHITE if base_mode == "L" else (WHITE,) * 3  # a bare 255 would mean pure red in RGB
    background = Image.new(base_mode, img.size, white)
    background.paste(img.convert(base_mode), mask=img.getchannel("A"))
    return background


def _os_reason(exc: OSError) -> str:
    if exc.strerror:
        return exc.strerror.lower()
    text = str(exc)
    if "truncated" in text:
        return f"truncated or corrupt image ({text})"
    return f"cannot decode image: {text}" if text else "cannot read file"
