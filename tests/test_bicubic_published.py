"""sd_plugin.data.bicubic.imresize against the published Set5/Set14 bicubic LR images, plus data-free checks."""
import glob
from os import path as osp

import cv2
import numpy as np
import pytest
from helpers import SHARED_DATA, smooth_image

from sd_plugin.data.bicubic import imresize

MIN_EXACT_SHARE = 0.999


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('bench', ['Set5', 'Set14'])
def test_matches_published_lr(bench, scale):
    hr_paths = sorted(glob.glob(osp.join(SHARED_DATA, bench, 'HR', '*.png')))
    if not hr_paths:
        pytest.skip(f'{osp.join(SHARED_DATA, bench)} not available')
    exact = total = 0
    for hr_path in hr_paths:
        name = osp.splitext(osp.basename(hr_path))[0]
        hr = cv2.imread(hr_path, cv2.IMREAD_UNCHANGED)
        hr = hr[:hr.shape[0] - hr.shape[0] % scale, :hr.shape[1] - hr.shape[1] % scale]
        published = cv2.imread(osp.join(SHARED_DATA, bench, 'LR_bicubic', f'X{scale}', f'{name}x{scale}.png'),
                               cv2.IMREAD_UNCHANGED)
        ours = imresize(hr, 1 / scale)
        assert ours.shape == published.shape, f'{bench} x{scale} {name}: {ours.shape} vs {published.shape}'
        diff = np.abs(ours.astype(np.int16) - published.astype(np.int16))
        assert diff.max() <= 1, f'{bench} x{scale} {name}: a pixel differs by {diff.max()} grey levels'
        exact += int((diff == 0).sum())
        total += diff.size
    share = exact / total
    print(f'\n{bench} x{scale}: {100 * share:.4f} % of {total} pixel values exact')
    assert share >= MIN_EXACT_SHARE, f'{bench} x{scale}: only {100 * share:.4f} % of pixel values exact'


def test_sizes_constants_and_dtype():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (37, 50), dtype=np.uint8)
    assert imresize(grey, 1 / 4).shape == (10, 13)  # ceil, as MATLAB
    assert imresize(grey, 1 / 3).shape == (13, 17)
    colour = smooth_image(rng, 30, 41)
    up = imresize(colour, 4)
    assert up.shape == (120, 164, 3) and up.dtype == np.uint8
    for value in (0, 1, 128, 255):
        const = np.full((23, 31, 3), value, np.uint8)
        assert (imresize(const, 1 / 4) == value).all() and (imresize(const, 2) == value).all()
    # each channel is resized on its own: a grey image gives the same as its three copies
    assert (imresize(np.dstack([grey] * 3), 1 / 2) == imresize(grey, 1 / 2)[..., None]).all()


def test_downscale_is_mean_on_linear_ramp_and_rejects_float():
    ramp = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (8, 1))  # (8, 128), value 2 * column
    small = imresize(ramp, 1 / 2)
    # away from the border, bicubic of a linear ramp is linear: column j covers input columns 2j, 2j+1
    assert (small[:, 4:-4] == (4 * np.arange(64) + 1)[4:-4]).all()
    with pytest.raises(ValueError):
        imresize(ramp.astype(np.float32), 1 / 2)
