"""Reading and writing image files: the accepted extensions, defined once for the whole package.

``read_image`` returns the array exactly as stored (OpenCV's ``IMREAD_UNCHANGED``: BGR / BGRA channel order, grey as
a 2-D array, grey+alpha PNG as (H, W, 2), uint8 or uint16 as in the file); ``write_image`` writes through a temporary
file in the same folder and renames it into place, so an interrupted write never leaves a half-written image under
the final name.
"""
import struct
import zlib
from os import path as osp

import cv2
import numpy as np

from sd_plugin.errors import ConfigError
from sd_plugin.files import atomic_write

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# What OpenCV's encoders keep (checked with opencv-python 5.0): the others silently drop alpha or cut 16 bits to 8.
SIXTEEN_BIT_EXTENSIONS = ('.png', '.tif', '.tiff')
ALPHA_EXTENSIONS = ('.png', '.tif', '.tiff', '.bmp', '.webp')  # alpha at 8 bits; at 16 bits: png and tif only


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
GREY_ALPHA = b'\x04'  # the PNG colour type of grey + alpha (byte 25 of the file, in its IHDR chunk)


def is_image_file(path):
    """Whether ``path`` has one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return path.lower().endswith(IMAGE_EXTENSIONS)


def read_image(path):
    """The image at ``path`` exactly as stored (``cv2.IMREAD_UNCHANGED``): (H, W) grey or (H, W, C) BGR / BGRA,
    uint8 or uint16; a grey+alpha PNG (which OpenCV expands to BGRA) as (H, W, 2): grey, alpha. A missing, unreadable
    (permission denied), corrupt or non-image file raises a one-line ConfigError naming it."""
    if not osp.isfile(path):
        raise ConfigError(f'{path}: no such file')
    try:
        with open(path, 'rb') as f:
            head = f.read(26)
    except OSError as err:
        raise ConfigError(f'{path}: cannot read this file ({err.strerror})') from None
    try:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ConfigError(f'{path}: cannot read this image ({str(err).strip().splitlines()[-1]})') from None
    if img is None or img.size == 0:
        raise ConfigError(f'{path}: cannot read this image (corrupt, truncated or not an image)')
    if head[:8] == PNG_SIGNATURE and head[25:26] == GREY_ALPHA and img.ndim == 3 and img.shape[2] == 4:
        img = np.ascontiguousarray(img[..., [0, 3]])
    return img


def read_uint8(path):
    """An 8-bit image for data preparation and evaluation: (H, W) grey or (H, W, 3) BGR, alpha dropped. A 16-bit
    file is refused with a one-line ConfigError naming it (sd-upscale keeps 16 bits; data sets are 8-bit)."""
    img = read_image(path)
    if img.dtype != np.uint8:
        raise ConfigError(f'{path}: {img.dtype} image, only 8-bit images are supported here')
    if img.ndim == 3 and img.shape[2] == 2:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return img


def read_rgb(path):
    """uint8 (H, W) grey or (H, W, 3) RGB image (alpha dropped); ConfigError naming an unreadable file."""
    img = read_uint8(path)
    return np.ascontiguousarray(img[..., ::-1]) if img.ndim == 3 else img


def check_writable(img, ext):
    """A ConfigError unless an image like ``img`` can be stored as ``ext`` (e.g. '.jpg') without losing its alpha
    channel or its 16 bits. The message says which extensions can."""
    ext = ext.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ConfigError(f'{ext}: not an image extension ({"/".join(IMAGE_EXTENSIONS)})')
    alpha = img.ndim == 3 and img.shape[2] in (2, 4)
    if img.ndim == 3 and img.shape[2] == 2 and ext != '.png':
        raise ConfigError(f'a grey+alpha image is written as PNG only, not {ext} (use --ext png)')
    if img.dtype == np.uint16 and ext not in SIXTEEN_BIT_EXTENSIONS:
        raise ConfigError(f'a 16-bit image cannot be written as {ext} without losing bits (use --ext png or tif)')
    if img.dtype not in (np.uint8, np.uint16):
        raise ConfigError(f'a {img.dtype} image cannot be written (8- and 16-bit images only)')
    if alpha and ext not in ALPHA_EXTENSIONS:
        raise ConfigError(f'an image with alpha cannot be written as {ext} without losing it (use --ext png, tif or '
                          f'webp)')


def write_image(path, img, params=None):
    """Write ``img`` (as ``read_image`` returns them) to ``path``: OpenCV encodes it in memory (format from ``path``'s
    extension) and ``files.atomic_write`` puts it in place. The folder is created if needed. ConfigError naming
    ``path`` if OpenCV cannot encode it; nothing is written then. A grey+alpha (H, W, 2) image becomes a grey+alpha
    PNG (``grey_alpha_png``)."""
    ext = osp.splitext(path)[1]
    if img.ndim == 3 and img.shape[2] == 2:
        if ext.lower() != '.png':
            raise ConfigError(f'{path}: a grey+alpha image is written as PNG only')
        data = grey_alpha_png(img)
        atomic_write(path, lambda f: f.write(data))
        return
    try:
        ok, encoded = cv2.imencode(ext or '.png', img, params or [])
    except cv2.error as err:
        raise ConfigError(f'{path}: cannot write this image ({str(err).strip().splitlines()[-1]})') from None
    if not ok:
        raise ConfigError(f'{path}: cannot write this image (OpenCV has no {ext or "such"} encoder here)')
    atomic_write(path, lambda f: f.write(encoded.tobytes()))


def grey_alpha_png(img):
    """The bytes of a grey+alpha PNG (colour type 4) of ``img``, (H, W, 2) uint8 or uint16 (grey, alpha): OpenCV
    encodes 1, 3 or 4 channels only and Pillow's LA mode is 8-bit only, so the few chunks are written here (rows
    unfiltered, zlib level 6)."""
    height, width = img.shape[:2]
    depth = 16 if img.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(img.astype('>u2' if depth == 16 else np.uint8)).view(np.uint8).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 before each row

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    header = struct.pack('>IIBBBBB', width, height, depth, 4, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw.tobytes(), 6))
            + chunk(b'IEND', b''))
