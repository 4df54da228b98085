"""Tests for defectkit.overlay (colours, shapes, contours) and defectkit.report (files, content)."""

import numpy as np
import pytest
import torch
from PIL import Image

from defectkit.viz.overlay import heatmap_overlay, jet, mask_contour, save_overlay, to_uint8_rgb
from defectkit.viz.report import metrics_text_table, write_report


def test_jet_endpoints_and_middle():
    c = jet(np.array([0.0, 0.5, 1.0, -3.0, 7.0]))
    assert c.dtype == np.uint8 and c.shape == (5, 3)
    assert tuple(c[0]) == (0, 0, 128)  # dark blue
    assert tuple(c[1]) == (128, 255, 128)  # green-ish middle
    assert tuple(c[2]) == (128, 0, 0)  # dark red
    assert tuple(c[3]) == tuple(c[0]) and tuple(c[4]) == tuple(c[2])  # clipped


def test_overlay_shape_and_colours():
    rgb = np.full((40, 60, 3), 100, np.uint8)
    amap = np.zeros((20, 30), np.float32)
    amap[:, 15:] = 10.0  # right half hot
    im = heatmap_overlay(rgb, amap, vmin=0.0, vmax=10.0, alpha=1.0)
    assert isinstance(im, Image.Image) and im.size == (60, 40) and im.mode == "RGB"
    a = np.asarray(im)
    assert tuple(a[20, 2]) == (0, 0, 128)  # cold -> blue
    assert tuple(a[20, 57]) == (128, 0, 0)  # hot -> red
    half = np.asarray(heatmap_overlay(rgb, amap, 0.0, 10.0, alpha=0.5))
    assert tuple(half[20, 2]) == (50, 50, 114)  # 0.5 * 100 + 0.5 * (0, 0, 128)
    none = np.asarray(heatmap_overlay(rgb, amap, 0.0, 10.0, alpha=0.0))
    assert (none == 100).all()


def test_overlay_accepts_gray_and_tensor_and_flat_map():
    gray = np.full((16, 16), 50, np.uint8)
    assert heatmap_overlay(gray, np.ones((16, 16)), 1.0, 1.0).size == (16, 16)  # vmin == vmax: no crash
    t = torch.rand(3, 16, 16)
    assert to_uint8_rgb(t).shape == (16, 16, 3)
    with pytest.raises(ValueError):
        heatmap_overlay(gray, np.ones((2, 16, 16)), 0, 1)


def test_mask_contour_drawn():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    edge = mask_contour(mask)
    assert edge.sum() == 36 and not edge[10, 10] and edge[5, 10]
    rgb = np.zeros((20, 20, 3), np.uint8)
    a = np.asarray(heatmap_overlay(rgb, np.zeros((20, 20)), 0, 1, alpha=0.0, mask=mask, contour_colour=(0, 255, 0)))
    assert tuple(a[5, 10]) == (0, 255, 0) and tuple(a[10, 10]) == (0, 0, 0)


def test_save_overlay_with_original(tmp_path):
    p = save_overlay(tmp_path / "sub" / "x.png", np.zeros((32, 32, 3), np.uint8), np.zeros((8, 8)), 0, 1,
                     with_original=True)
    assert Image.open(p).size == (32 * 2 + 4, 32)


def test_write_report(tmp_path):
    thumb = save_overlay(tmp_path / "out" / "overlays" / "a.png", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), 0, 1)
    metrics = {"image_auroc": 0.996, "pixel_auroc": 0.98, "aupro": 0.9, "pixel_ap": 0.5,
               "image_f1_max": 0.97, "image_f1_threshold": 1.2345}
    rows = [{"path": "a<b>.png", "defect_type": "good", "label": 0, "score": 0.5, "predicted_label": 1}]
    params = {"method": "patchcore", "backbone": "efficientnet_lite0", "image_size": 256, "crop_size": None,
              "seed": 0, "versions": {"torch_version": "2.x"}}
    html_path = write_report(tmp_path / "out", "Test <run>", metrics, rows,
                             [{"image": thumb, "caption": "hole & co"}], params)
    assert html_path == tmp_path / "out" / "report.html"
    html = html_path.read_text()
    md = (tmp_path / "out" / "report.md").read_text()
    for text in (html, md):
        assert "99.6 %" in text and "1.234" in text and "efficientnet_lite0" in text
        assert "overlays/a.png" in text and "versions.torch_version" in text and "crop_size" in text
    assert "Test &lt;run&gt;" in html and "a&lt;b&gt;.png" in html and "hole &amp; co" in html
    assert 'class="wrong"' in html  # the misclassified row is highlighted
    assert "<script" not in html and "http" not in html  # self-contained
    assert "| I-AUROC | 99.6 % |" in md


def test_metrics_text_table():
    text = metrics_text_table({"image_auroc": 1.0, "image_f1_threshold": 3.0})
    assert "I-AUROC" in text and "100.0 %" in text and "3" in text
