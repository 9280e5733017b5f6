"""fnc.viz: ranked lists have the documented layout and border colours; attention maps draw for FNC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import fnc
from fnc.viz import MATCH_COLOR, MISMATCH_COLOR, QUERY_COLOR, UNKNOWN_COLOR, attention_map, colormap, ranked_list

THUMB = (30, 40)  # (H, W)
BORDER = 3


def _gallery(n=6):
    # Mid grey, so no image pixel can be mistaken for a border colour.
    return [np.full((20 + i, 30, 3), 128, np.uint8) for i in range(n)]


def _border_colors(img, k):
    """The colour of each tile's top-left border pixel, query first, from the documented layout."""
    tile_w = THUMB[1] + 2 * BORDER
    xs = [8] + [8 + tile_w + 24 + r * (tile_w + 6) for r in range(k)]
    return [img.getpixel((x + 1, 8 + 1)) for x in xs]


def test_ranked_list_size_and_border_colours(tmp_path):
    gallery = _gallery()
    ids = [5, 9, 5, 9, 9, 5]
    distances = [0.9, 0.1, 0.4, 0.2, 0.8, 0.3]  # ranking 1, 3, 5, 2, 4, 0
    k = 4
    out = tmp_path / "ranked.png"
    img = ranked_list(
        gallery[0],
        gallery,
        distances=distances,
        query_id=5,
        gallery_ids=ids,
        k=k,
        thumb_size=THUMB,
        border=BORDER,
        save=out,
    )
    assert img.mode == "RGB"
    assert img.size == (16 + (k + 1) * (THUMB[1] + 2 * BORDER) + (k - 1) * 6 + 24, 16 + THUMB[0] + 2 * BORDER + 32)
    assert _border_colors(img, k) == [QUERY_COLOR, MISMATCH_COLOR, MISMATCH_COLOR, MATCH_COLOR, MATCH_COLOR]
    assert Image.open(out).size == img.size
    # Bottom-right border pixel of the last tile, too: the whole frame is coloured.
    tile_w = THUMB[1] + 2 * BORDER
    last_x = 8 + tile_w + 24 + (k - 1) * (tile_w + 6)
    assert img.getpixel((last_x + tile_w - 1, 8 + THUMB[0] + 2 * BORDER - 1)) == MATCH_COLOR
    # Interior: the (grey) image, not a border colour.
    assert img.getpixel((last_x + tile_w // 2, 8 + BORDER + THUMB[0] // 2)) == (128, 128, 128)


def test_ranked_list_indices_no_ids_and_k_capped():
    gallery = _gallery(3)
    img = ranked_list(
        gallery[0],
        gallery,
        ranked_indices=[2, 0, 1],
        query_id=1,
        gallery_ids=[1, 2, 1],
        k=10,
        thumb_size=THUMB,
        border=BORDER,
    )
    assert _border_colors(img, 3) == [QUERY_COLOR, MATCH_COLOR, MATCH_COLOR, MISMATCH_COLOR]
    plain = ranked_list(gallery[0], gallery, k=2, thumb_size=THUMB, border=BORDER)
    assert _border_colors(plain, 2) == [QUERY_COLOR, UNKNOWN_COLOR, UNKNOWN_COLOR]
    with pytest.raises(ValueError, match="not both"):
        ranked_list(gallery[0], gallery, distances=[1, 2, 3], ranked_indices=[0, 1, 2])
    with pytest.raises(ValueError, match="distances for 3"):
        ranked_list(gallery[0], gallery, distances=[1, 2])


def test_colormap_endpoints_and_shape():
    rgb = colormap(np.linspace(0, 1, 5).reshape(1, 5))
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    assert tuple(colormap(np.array(-1.0))) == tuple(colormap(np.array(0.0)))


@pytest.fixture(scope="module")
def fnc_model():
    torch.manual_seed(0)
    return fnc.create_model("fnc_resnet50")


def test_attention_map_on_fnc(fnc_model, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    fnc_model.train()
    img = attention_map(fnc_model, image, input_size=(64, 96), save=tmp_path / "attn.png")
    assert fnc_model.training
    assert img.size == (3 * 96 + 32, 64 + 74) and (tmp_path / "attn.png").is_file()
    # 64 x 96 at stride 16 is a 4 x 6 grid; an explicit position and the plain mask both draw.
    mask_img = attention_map(fnc_model, Image.fromarray(image), position=(3, 5), channel="mask", input_size=(64, 96))
    assert mask_img.size == img.size
    # The heat panels differ from the input panel (the maps are really drawn over it).
    arr = np.asarray(img)
    first, second = arr[30:94, 8:104], arr[30:94, 112:208]
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 5
    with pytest.raises(ValueError, match="off the 4 x 6"):
        attention_map(fnc_model, image, position=(4, 0), input_size=(64, 96))


def test_attention_map_zoom_enlarges_the_panels_not_the_input(fnc_model):
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    small = attention_map(fnc_model, image, position=(1, 2), input_size=(64, 96))
    big = attention_map(fnc_model, image, position=(1, 2), input_size=(64, 96), zoom=3)
    assert big.size == (3 * 96 * 3 + 32, 64 * 3 + 74)
    # The model ran at 64 x 96 both times: the enlarged SAB panel, shrunk back, is the small one
    # (up to resampling and the drawn grid / outlines).
    panel_small = np.asarray(small)[30:94, 112:208].astype(int)
    panel_big = np.asarray(big.crop((16 + 288, 30, 16 + 576, 30 + 192)).resize((96, 64), Image.BILINEAR)).astype(int)
    assert np.abs(panel_small - panel_big).mean() < 25
    with pytest.raises(ValueError, match="zoom"):
        attention_map(fnc_model, image, input_size=(64, 96), zoom=0)
    with pytest.raises(ValueError, match="top_k"):
        attention_map(fnc_model, image, input_size=(64, 96), top_k=0)


def test_attention_map_rejects_models_without_attention():
    with pytest.raises(TypeError, match="needs an FNC model"):
        attention_map(fnc.create_model("baseline_resnet50"), np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("separate", [True, False])
def test_fnc_attention_is_what_its_blocks_compute(separate):
    # Oracle: the two branches run stage by stage by hand, then the blocks' own maps; with a
    # shared res4 (separate=False) the branch stages are empty and the trunk runs layer4.
    torch.manual_seed(0)
    model = fnc.models.FNC("resnet50", separate=separate).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        maps = model.attention(x)
        trunk = model.backbone(x)
        s_in = model.spatial.layer4(model.spatial.layer3(trunk))
        c_in = model.channel.layer4(model.channel.layer3(trunk))
        torch.testing.assert_close(maps.sab_input, s_in, rtol=0, atol=0)
        torch.testing.assert_close(maps.cab_input, c_in, rtol=0, atol=0)
        torch.testing.assert_close(maps.sab_attention, model.spatial.attention.attention_map(s_in))
        torch.testing.assert_close(maps.cab_mask, model.channel.attention.channel_mask(c_in))
    assert maps.sab_attention.shape == (2, 12, 12)
    torch.testing.assert_close(maps.sab_attention.sum(-1), torch.ones(2, 12))
    # The hooks are gone afterwards: a plain forward leaves nothing behind.
    assert not model.spatial.attention._forward_pre_hooks and not model.channel.attention._forward_pre_hooks
