"""Sliding-window inference: equals whole-volume prediction for pointwise models, no seams,
every voxel covered, padding, mirroring, float16."""

import numpy as np
import pytest

from medzoo.evaluation.sliding_window import (gaussian_importance, sliding_window_inference,
                                              window_slices, window_starts)


def softmax_pointwise(batch):
    """A per-voxel 'model': 3-class softmax of a fixed linear map of the channels."""
    logits = np.stack([batch[..., 0], -batch[..., 0], 0.5 * batch[..., 0] + 0.2], axis=-1)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_pointwise_model_equals_whole_volume_prediction(mode):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(19, 23, 30, 1)).astype(np.float32)
    out = sliding_window_inference(volume, (8, 10, 12), softmax_pointwise, overlap=0.5,
                                   batch_size=3, mode=mode)
    assert out.shape == (19, 23, 30, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, softmax_pointwise(volume[None])[0], atol=1e-6)


def test_identity_model_with_mirroring_and_padding_returns_the_input():
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(5, 20, 9, 2)).astype(np.float32)  # depth and width < patch: padded
    out = sliding_window_inference(volume, (8, 8, 16), lambda b: b, overlap=0.25,
                                   mirror_axes=(0, 1, 2))
    assert out.shape == volume.shape
    np.testing.assert_allclose(out, volume, atol=1e-6)


def test_mirroring_calls_every_flip_combination_and_undoes_it():
    calls = []

    def position_model(batch):  # output depends on where a voxel sits in the window
        calls.append(batch.shape[0])
        ramp = np.arange(batch.shape[1], dtype=np.float32)[None, :, None, None, None]
        return batch + ramp

    x = np.arange(8, dtype=np.float32)
    volume = np.broadcast_to(x[None, None, :, None], (8, 8, 8, 1)).copy()  # not symmetric in x
    out = sliding_window_inference(volume, (8, 8, 8), position_model, mirror_axes=(0, 2))
    assert len(calls) == 4  # {}, {0}, {2}, {0, 2}
    # the input comes back unflipped; the z ramp predicted on z-flipped windows is flipped back
    # to 7..0, so the mean of the four is the input plus 3.5 everywhere
    np.testing.assert_allclose(out[..., 0], volume[..., 0] + 3.5, atol=1e-5)


def test_gaussian_blending_has_no_seams_where_constant_blending_does():
    """A model whose output depends on the position inside the window (as real networks' border
    predictions do): plain averaging shows a jump where a window begins or ends, the Gaussian
    importance map makes the blended output smooth."""
    def border_biased(batch):
        p = batch.shape[1]
        bump = np.sin(np.pi * (np.arange(p) + 0.5) / p).astype(np.float32)  # 0 at the borders
        return batch + bump[None, :, None, None, None]

    z = np.linspace(0, 1, 70, dtype=np.float32)
    volume = z[:, None, None, None].copy()  # a smooth ramp along z (1 × 1 in-plane)
    jumps = {}
    for mode in ("gaussian", "constant"):
        out = sliding_window_inference(volume, (16, 1, 1), border_biased, overlap=0.5, mode=mode)
        profile = out[:, 0, 0, 0] - z
        jumps[mode] = np.abs(np.diff(profile))[7:-7].max()  # where windows overlap
    bump_slope = np.pi / 16  # steepest step of one window's own (smooth) output
    assert jumps["constant"] > 2 * bump_slope  # a window's start or end shows as a step
    assert jumps["gaussian"] < bump_slope  # blended output no steeper than one window's


@pytest.mark.parametrize("size,patch,overlap", [(1, 4, 0.5), (4, 4, 0.5), (5, 4, 0.5), (37, 8, 0.5),
                                                (37, 8, 0.0), (100, 16, 0.25), (64, 16, 0.9)])
def test_windows_cover_every_voxel_and_stay_inside(size, patch, overlap):
    starts = window_starts(size, patch, overlap)
    covered = np.zeros(max(size, patch), bool)
    for s in starts:
        assert 0 <= s and s + patch <= max(size, patch)
        covered[s:s + patch] = True
    assert covered[:size].all()
    assert starts[-1] + patch == max(size, patch)  # last window flush with the end
    if size > patch and overlap == 0.5:
        assert np.diff(starts).max() <= patch // 2


def test_window_slices_tile_a_3d_grid():
    shape, patch = (13, 20, 7), (6, 8, 7)
    count = np.zeros(shape, int)
    for window in window_slices(shape, patch, 0.5):
        count[window] += 1
    assert count.min() >= 1
    assert len(window_slices(shape, patch, 0.5)) == len(window_starts(13, 6, .5)) * len(window_starts(20, 8, .5))


def test_gaussian_importance_is_centred_positive_and_sigma_is_an_eighth():
    g = gaussian_importance((16, 32))
    assert g.max() == pytest.approx(1.0) and g.min() == pytest.approx(1e-3)  # MONAI's floor
    np.testing.assert_allclose(g, g[::-1, ::-1])  # centred
    # sigma = 32/8 = 4 voxels along x, 16/8 = 2 along z; centres at 15.5 and 7.5
    assert g[7, 19] / g[7, 15] == pytest.approx(np.exp(-0.5 * (3.5 / 4) ** 2) / np.exp(-0.5 * (0.5 / 4) ** 2), rel=1e-4)
    assert g[3, 15] / g[7, 15] == pytest.approx(np.exp(-0.5 * (4.5 / 2) ** 2) / np.exp(-0.5 * (0.5 / 2) ** 2), rel=1e-4)


def test_float16_accumulation_matches_float32():
    rng = np.random.default_rng(2)
    volume = rng.normal(size=(20, 20, 20, 1)).astype(np.float32)
    out16 = sliding_window_inference(volume, (8, 8, 8), softmax_pointwise, dtype="float16")
    out32 = sliding_window_inference(volume, (8, 8, 8), softmax_pointwise)
    assert out16.dtype == np.float16
    np.testing.assert_allclose(out16.astype(np.float32), out32, atol=2e-3)


def test_bad_arguments_say_what_was_expected():
    volume = np.zeros((8, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="one size per spatial axis.*patch_size=\\(8, 8\\)"):
        sliding_window_inference(volume, (8, 8), lambda b: b)
    with pytest.raises(ValueError, match="overlap.*Received: overlap=1.0"):
        sliding_window_inference(volume, (8, 8, 8), lambda b: b, overlap=1.0)
    with pytest.raises(ValueError, match="Received: \\(1, 8, 8, 8\\)"):
        sliding_window_inference(volume, (8, 8, 8), lambda b: b[..., 0])


def test_memory_stays_within_a_few_copies_of_the_volume():
    import tracemalloc

    volume = np.zeros((48, 64, 64, 1), np.float32)
    two_class = lambda b: np.concatenate([b, 1 - b], axis=-1)  # noqa: E731
    tracemalloc.start()
    out = sliding_window_inference(volume, (16, 16, 16), two_class, batch_size=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # output (K=2) + float32 weight map + a batch of windows: under 2 copies of the output
    assert peak < 2 * out.nbytes, (peak, out.nbytes)
