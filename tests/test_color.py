"""rlcore.color against colour-science (the oracle) and the published CIEDE2000 test data."""

import colour
import numpy as np
import pytest
import torch

from rlcore import color

# Sharma, Wu and Dalal (2005), Table 1: (Lab1, Lab2, dE00). Pairs 13-19 sit on the mean-hue
# discontinuity (hues about 180 degrees apart), the hard cases for any implementation.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, -1.0, 2.0), (50.0, 0.0, 0.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0010), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0012), 7.2195),
    ((50.0, -0.001, 2.49), (50.0, 0.0009, -2.49), 4.8045),
    ((50.0, -0.001, 2.49), (50.0, 0.0011, -2.49), 4.7461),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def _random_pairs(n: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Random Lab pairs, with blocks of the edge cases: achromatic, near-zero chroma, hue wrap-around."""
    rng = np.random.default_rng(0)
    L = rng.uniform(0, 100, (n, 2))
    C = rng.uniform(0, 120, (n, 2))
    h = rng.uniform(0, 2 * np.pi, (n, 2))
    C[:2000] = 0  # both achromatic
    C[2000:4000, 0] = 0  # one achromatic
    C[4000:6000] = rng.uniform(0, 1e-3, (2000, 2))  # near-zero chroma
    h[6000:10000] = rng.uniform(-0.2, 0.2, (4000, 2))  # straddling hue 0/360
    h[10000:12000, 1] = h[10000:12000, 0] + rng.uniform(-1e-4, 1e-4, 2000)  # nearly equal hues
    lab1 = np.stack([L[:, 0], C[:, 0] * np.cos(h[:, 0]), C[:, 0] * np.sin(h[:, 0])], -1)
    lab2 = np.stack([L[:, 1], C[:, 1] * np.cos(h[:, 1]), C[:, 1] * np.sin(h[:, 1])], -1)
    return lab1, lab2


def test_delta_e_float64_matches_colour_science():
    lab1, lab2 = _random_pairs()
    expected = colour.delta_E(lab1, lab2, method="CIE 2000")
    got = color.delta_e_2000(torch.from_numpy(lab1), torch.from_numpy(lab2))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


def test_delta_e_float32_matches_colour_science():
    lab1, lab2 = (x.astype(np.float32) for x in _random_pairs())
    expected = colour.delta_E(lab1.astype(np.float64), lab2.astype(np.float64), method="CIE 2000")
    got = color.delta_e_2000(torch.from_numpy(lab1), torch.from_numpy(lab2))
    assert got.dtype == torch.float32
    # CIEDE2000 jumps where the hues are exactly 180 degrees apart (the mean hue flips by 180), so
    # pairs within float32 rounding of that line may legitimately land on the other side.
    h1 = np.degrees(np.arctan2(lab1[:, 2], lab1[:, 1]))
    h2 = np.degrees(np.arctan2(lab2[:, 2], lab2[:, 1]))
    chromatic = (np.hypot(lab1[:, 1], lab1[:, 2]) > 0) & (np.hypot(lab2[:, 1], lab2[:, 2]) > 0)
    on_the_line = chromatic & (np.abs((h1 - h2) % 360 - 180) < 1e-3)
    assert on_the_line.sum() < 10
    np.testing.assert_allclose(got.numpy()[~on_the_line], expected[~on_the_line], rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_delta_e_sharma_reference_pairs(dtype):
    lab1 = torch.tensor([p[0] for p in SHARMA], dtype=dtype)
    lab2 = torch.tensor([p[1] for p in SHARMA], dtype=dtype)
    expected = np.array([p[2] for p in SHARMA])
    np.testing.assert_allclose(color.delta_e_2000(lab1, lab2).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(color.delta_e_2000(lab2, lab1).numpy(), expected, atol=1e-4)


def test_delta_e_is_zero_for_identical_colours_and_broadcasts():
    lab = torch.tensor([[50.0, 10.0, -20.0], [0.0, 0.0, 0.0], [100.0, -0.0, 0.0]], dtype=torch.float64)
    assert torch.all(color.delta_e_2000(lab, lab) == 0)
    assert color.delta_e_2000(lab[:, None], lab[None]).shape == (3, 3)


def _colour_lab(rgb_uint8: np.ndarray) -> np.ndarray:
    xyz = colour.RGB_to_XYZ(rgb_uint8 / 255.0, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=True)
    return colour.XYZ_to_Lab(xyz)


def test_srgb_to_lab_matches_colour_science_on_all_grey_levels_and_random_colours():
    rng = np.random.default_rng(1)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    rgb = np.concatenate([grey, rng.integers(0, 256, (100_000, 3)).astype(np.uint8)])
    expected = _colour_lab(rgb)
    lab64 = color.srgb_to_lab(torch.from_numpy(rgb), torch.float64).numpy()
    lab32 = color.srgb_to_lab(torch.from_numpy(rgb)).numpy()
    np.testing.assert_allclose(lab64, expected, atol=1e-9)
    np.testing.assert_allclose(lab32, expected, atol=1e-3)
    # Greys are neutral under the IEC matrix and this white point (a derived matrix would tint them).
    assert np.abs(lab64[:256, 1:]).max() < 0.01


def test_planar_lab_of_the_reward_path_matches_colour_science():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 16, 12, 3)).astype(np.uint8)
    L, a, b = color.srgb_to_lab_planes(torch.from_numpy(images))
    planar = torch.stack((L, a, b), dim=-1).numpy().reshape(images.shape)
    np.testing.assert_allclose(planar, _colour_lab(images), atol=1e-3)


def test_uint8_table_and_float_formula_agree():
    codes = torch.arange(256, dtype=torch.uint8)
    from_table = color.srgb_to_linear(codes, torch.float64)
    from_formula = color.srgb_to_linear(codes.double() / 255)
    assert torch.equal(from_table, from_formula)
    back = color.linear_to_srgb(from_table) * 255
    assert torch.equal(back.round().to(torch.uint8), codes)
