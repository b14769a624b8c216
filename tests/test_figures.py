"""Display panels and figures: the photo shows whatever pixel scale the library accepts, and bad input
(NaN maps, titles that do not match the images, malformed boxes) is refused rather than drawn wrong."""

import numpy as np
import pytest
from PIL import Image

from saliency_jax import figures, io
from saliency_jax.localisation import localise


def _photo():
    """A 24 x 32 uint8 photo (a bright square on a mid-grey ground) and the same photo as floats on 0-1."""
    photo = np.full((24, 32, 3), 120, np.uint8)
    photo[6:18, 8:24] = (250, 200, 30)
    return photo, photo.astype(np.float32) / 255.0


def _figure_pixels(fig):
    """The figure's first axes' image, as drawn (uint8 RGB)."""
    return np.asarray(fig.axes[0].images[0].get_array())


def test_panels_show_a_float_photo_on_the_0_1_scale_as_its_uint8_twin():
    photo, unit = _photo()
    saliency = np.zeros((24, 32))
    saliency[8:16, 10:22] = 1.0
    found = localise(unit, saliency)  # the pipeline takes the 0-1 floats, so the panels must too
    assert found.mask.any() and found.seeds.foreground.any() and found.seeds.background.any()
    # Was black: 0-1 floats clipped to 0-255 and cast to uint8 are all 0 or 1.
    for as_uint8, as_float in [
        (figures.box_panel(photo, found.box), figures.box_panel(unit, found.box)),
        (figures.mask_panel(photo, found.mask, found.segmentation),
         figures.mask_panel(unit, found.mask, found.segmentation)),
        (figures.seeds_panel(photo, found.seeds.foreground, found.seeds.background),
         figures.seeds_panel(unit, found.seeds.foreground, found.seeds.background)),
        *zip(figures.localisation_panels(photo, saliency, found), figures.localisation_panels(unit, saliency, found)),
    ]:
        assert as_float.dtype == np.uint8 and as_float.shape == (24, 32, 3)
        np.testing.assert_array_equal(as_float, as_uint8)
    np.testing.assert_array_equal(figures.localisation_panels(unit, saliency, found)[0], photo)
    # Floats on 0-255 are read as such, and greyscale becomes three channels.
    np.testing.assert_array_equal(figures.box_panel(photo.astype(np.float64), found.box),
                                  figures.box_panel(photo, found.box))
    assert figures.mask_panel(photo[..., 0], found.mask).shape == (24, 32, 3)


def test_saliency_figure_shows_a_float_photo_on_the_0_1_scale():
    photo, unit = _photo()
    saliency = np.random.default_rng(0).random((24, 32))
    for given in (photo, unit, photo.astype(np.float64)):
        fig = figures.saliency_figure(given, saliency, "t")
        np.testing.assert_array_equal(_figure_pixels(fig), photo)  # was all black for the 0-1 floats
    with pytest.raises(ValueError, match="photo contains NaN or infinite pixels"):
        figures.saliency_figure(np.full((4, 4, 3), np.nan), np.ones((4, 4)))
    with pytest.raises(ValueError, match="saliency contains NaN"):
        figures.saliency_figure(photo, np.full((24, 32), np.nan))


def test_normalise_map_refuses_nan_and_infinite_maps():
    saliency = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(figures.normalise_map(saliency, 100.0), saliency / 11.0)
    np.testing.assert_array_equal(figures.normalise_map(np.ones((3, 4))), np.zeros((3, 4)))  # constant: zeros
    for bad in (np.nan, np.inf, -np.inf):
        broken = saliency.copy()
        broken[1, 2] = bad
        with pytest.raises(ValueError, match="saliency contains NaN or infinite values"):
            figures.normalise_map(broken)  # was an all-zero map for NaN
        with pytest.raises(ValueError, match="saliency contains NaN or infinite values"):
            figures.saliency_panel(broken)
    with pytest.raises(ValueError, match="saliency contains NaN or infinite values"):
        figures.normalise_map(np.array([[1e39, 0.0]]))  # infinite in float32
    with pytest.raises(ValueError, match=r"saliency must not be empty, got shape \(0, 4\)"):
        figures.normalise_map(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="saliency must hold real numbers, got dtype <U1"):
        figures.normalise_map(np.array([["a"]]))
    with pytest.raises(ValueError, match="percentile must be a finite number >= 0.0 and <= 100.0, got 150"):
        figures.normalise_map(saliency, 150)


def test_image_grid_refuses_titles_that_do_not_match_the_images_and_bad_columns():
    image = np.zeros((4, 4, 3), np.uint8)
    fig = figures.image_grid([image] * 3, ["a", "b", "c"], 2)
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["a", "b", "c"]
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match="titles must have one string per image: 3 for 3 images, got 1"):
        figures.image_grid([image] * 3, ["a"], 3)  # was a grid of 1 image
    with pytest.raises(ValueError, match="titles must have one string per image: 1 for 1 images, got 2"):
        figures.image_grid([image], ["a", "b"], 3)
    with pytest.raises(ValueError, match="titles must be a sequence of strings, one per image, got a single str"):
        figures.image_grid([image] * 3, "abc", 3)
    for columns in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=f"columns must be an integer >= 1, got {columns!r}"):
            figures.image_grid([image], ["a"], columns)  # 0 was ZeroDivisionError
    with pytest.raises(ValueError, match="cell must be a finite number > 0.0, got 0"):
        figures.image_grid([image], ["a"], 1, cell=0)


def test_image_grid_rows_are_as_tall_as_their_images():
    wide, square = np.zeros((100, 200, 3), np.uint8), np.zeros((50, 50), np.float32)
    fig = figures.image_grid([wide, wide, wide, square], ["a", "b", "c", "d"], 2, cell=2.0)
    width, height = fig.get_size_inches()
    assert width == pytest.approx(4.0) and height == pytest.approx(2.0 * (0.5 + 1.0) + 0.3 * 2)
    fig.canvas.draw()  # drawn, each landscape row is half as tall as the square one
    first, last = fig.axes[0].get_window_extent(), fig.axes[2].get_window_extent()
    assert first.width == pytest.approx(last.width, rel=0.02)
    assert first.height == pytest.approx(0.5 * last.height, rel=0.1)


def test_image_grid_rows_stop_at_four_cells_for_a_needle_of_an_image(tmp_path):
    # A 5000 x 1 photo made an 11,000-inch canvas that filled the memory; its row is now 4 cells tall.
    needle, square = np.zeros((5000, 1, 3), np.uint8), np.zeros((50, 50, 3), np.uint8)
    fig = figures.image_grid([needle, square], ["a", "b"], 2, cell=2.0)
    assert fig.get_size_inches()[1] == pytest.approx(2.0 * figures.MAX_ASPECT + 0.3)
    io.save_figure(tmp_path / "needle.png", fig)
    assert max(Image.open(tmp_path / "needle.png").size) < 1000


@pytest.mark.parametrize("box, message", [
    ((1, 2, 3), r"box must be four numbers x0, y0, x1, y1 \(shape \[4\]\), got shape \[3\]"),  # was an unpack error
    ([[1, 2, 3, 4]], r"got shape \[1, 4\]"),
    ((1, 2, np.nan, 4), "box must be four finite numbers"),
    (("a", 2, 3, 4), "box must be four numbers x0, y0, x1, y1, got tuple"),
    (None, "box must be four numbers"),
])
def test_box_panel_refuses_a_box_that_is_not_four_numbers(box, message):
    with pytest.raises(ValueError, match=message):
        figures.box_panel(np.zeros((8, 8, 3), np.uint8), box)


def test_box_panel_draws_the_outline_and_refuses_a_bad_thickness():
    out = figures.box_panel(np.zeros((8, 8, 3), np.uint8), (2, 2, 6, 6), thickness=1)
    outline = np.zeros((8, 8), bool)
    outline[2:6, 2:6] = True
    outline[3:5, 3:5] = False
    np.testing.assert_array_equal(out.any(-1), outline)
    for thickness in (0, 1.5):
        with pytest.raises(ValueError, match="thickness must be an integer >= 1"):
            figures.box_panel(np.zeros((8, 8, 3), np.uint8), (2, 2, 6, 6), thickness=thickness)


def test_masks_of_another_shape_are_refused():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"mask must be a mask of the image's shape \[8, 8\], got shape \[4, 4\]"):
        figures.mask_panel(image, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match=r"foreground must be a mask of the image's shape \[8, 8\]"):
        figures.seeds_panel(image, np.ones((8, 8, 3), bool), np.zeros((8, 8), bool))



def test_normalise_map_spans_ranges_wider_than_float32():
    # -3e38 to 3e38 once gave [0, 0, nan] and -2e38 to 2e38 all zeros (the range overflowed float32)
    np.testing.assert_allclose(figures.normalise_map(np.array([[-3e38, 0, 3e38]], np.float32), 100), [[0, 0.5, 1]])
    np.testing.assert_array_equal(figures.normalise_map(np.array([[-2e38, 2e38]]), 100), [[0, 1]])


def test_image_grid_checks_its_images_and_draws_floats_by_the_pixel_rule():
    fig = figures.image_grid([np.zeros((4, 4))], ["a"], columns=10**6)  # once 10**6 axes for one image
    assert len(fig.axes) == 1
    for images, titles, match in [([np.zeros(5)], ["a"], r"images\[0\] must be \[H, W\] \(a map\) or \[H, W, 3\]"),
                                  ([np.zeros((4, 4, 5))], ["a"], r"images\[0\] must be \[H, W\]"),
                                  ([np.full((2, 2), "a")], ["a"], r"images\[0\] must hold real numbers"),
                                  (None, [], "images must be a sequence of images"),
                                  ([np.zeros((4, 4))], None, "titles must be a sequence of strings")]:
        with pytest.raises(ValueError, match=match):
            figures.image_grid(images, titles, 1)
    fig = figures.image_grid([np.full((4, 4, 3), 200.0)], ["a"], 1)  # 0-255 floats: grey, not clipped to white
    assert np.asarray(fig.axes[0].images[0].get_array()).max() == 200


def test_panels_check_maps_boxes_and_the_localisation(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    for bad in (np.random.rand(16, 16, 2), np.random.rand(16)):
        with pytest.raises(ValueError, match="saliency must be one map"):
            figures.saliency_figure(image, bad)
        with pytest.raises(ValueError, match="saliency must be one map"):
            figures.saliency_panel(bad)  # once [4, 4, 3, 3]
    with pytest.raises(ValueError, match=r"box must have x0 < x1 and y0 < y1, got \[10.0, 10.0, 2.0, 2.0\]"):
        figures.box_panel(image, (10, 10, 2, 2))  # once a 1-pixel box at (10, 10)
    with pytest.raises(ValueError, match="box must overlap the 16 x 16 image"):
        figures.box_panel(image, (-100, -100, -50, -50))
    saliency = np.random.default_rng(0).random((16, 16))
    found = localise(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8), saliency)
    with pytest.raises(ValueError, match="found must be the pipeline's Localisation"):
        figures.localisation_panels(image, saliency, None)
    with pytest.raises(ValueError, match=r"saliency must have the image's height and width \[16, 16\]"):
        figures.localisation_panels(image, saliency[:8, :8], found)
    assert [p.shape for p in figures.localisation_panels(image, saliency, found)] == [(16, 16, 3)] * 5


def test_a_figure_title_sits_above_the_panels_titles(tmp_path):
    # A centred suptitle over a row of five panels ran through the middle panel's title.
    panels = [np.full((40, 60, 3), 100 + 20 * i, np.uint8) for i in range(5)]
    figure = figures.image_grid(panels, list(figures.PANEL_TITLES), columns=5)
    figures.title_above(figure, "chelsea: class 285 (Egyptian cat), crops")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    title = figure._suptitle.get_window_extent(renderer)
    for ax in figure.axes:
        assert title.y0 >= ax.title.get_window_extent(renderer).y1
    io.save_figure(tmp_path / "f.png", figure)
    assert Image.open(tmp_path / "f.png").size[1] > figure.get_size_inches()[1] * 100  # the tight box took it in
    with pytest.raises(ValueError, match="text must be a string"):
        figures.title_above(figure, None)
