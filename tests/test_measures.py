"""farm.core.measures.glyph_region: one call dilates a whole batch of masks, exactly as per-mask scipy does."""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from farm.core.measures import glyph_region


@pytest.mark.parametrize("margin", [0, 1, 2, 4, 6])
def test_a_batch_is_dilated_as_each_mask_alone(margin):
    rng = np.random.default_rng(margin)
    masks = rng.random((5, 20, 33)) > 0.97
    masks[0, 0, :] = masks[1, :, -1] = True  # strokes on the border: the dilation must not wrap round
    region = glyph_region(masks, margin)
    expected = np.stack([binary_dilation(m, iterations=margin) if margin else m for m in masks])
    assert region.dtype == bool and region.shape == masks.shape
    np.testing.assert_array_equal(region, expected)
    np.testing.assert_array_equal(glyph_region(masks[2], margin), expected[2])  # a single (H, W) mask too


def test_the_masks_given_are_left_as_they_are():
    masks = np.zeros((2, 9, 9), bool)
    masks[:, 4, 4] = True
    glyph_region(masks, 3)
    assert masks.sum() == 2
