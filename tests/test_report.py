"""Tests for viz.overlay (colours, shapes, contours), viz.report (text tables), viz.html and viz.plots."""

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from defectkit.viz import plots
from defectkit.viz.html import image_data_uri, json_script, table
from defectkit.viz.overlay import heatmap_overlay, jet, mask_contour, save_overlay, to_uint8_rgb
from defectkit.viz.report import metrics_text_table


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
    p = save_overlay(
        tmp_path / "sub" / "x.png", np.zeros((32, 32, 3), np.uint8), np.zeros((8, 8)), 0, 1, with_original=True
    )
    assert Image.open(p).size == (32 * 2 + 4, 32)


def test_metrics_text_table():
    text = metrics_text_table({"image_auroc": 1.0, "image_f1_threshold": 3.0})
    assert "I-AUROC" in text and "100.0 %" in text and "3" in text


def test_plots_are_standalone_svg_with_ids_unique_across_plots():
    fpr = np.linspace(0, 1, 50)
    svgs = [
        plots.roc_plot({"fpr": fpr, "tpr": np.sqrt(fpr)}, {"fpr": fpr, "tpr": fpr**0.3}, 0.9, 0.95),
        plots.pr_plot({"recall": fpr, "precision": 1 - fpr / 2}, {"recall": fpr, "precision": 1 - fpr}, 0.5, 0.8),
        plots.pro_plot({"fpr": fpr, "pro": np.sqrt(fpr)}, 0.7),
        plots.histogram_plot(np.r_[np.zeros(5), np.ones(5)], np.r_[np.zeros(5), np.ones(5)], 0.5, "t")[0],
        plots.bar_chart(
            ["a", "b"],
            {"m1": ([1.0, 2.0], [0.1, float("nan")]), "m2": ([3.0, None], [0.2, 0.0])},
            "s",
            "Training time",
            "train",
        ),
    ]
    ids = []
    for svg in svgs:
        assert svg.startswith("<svg") and "<metadata" not in svg
        ET.fromstring(svg)  # well-formed on its own
        own = re.findall(r'\bid="([^"]+)"', svg)
        refs = re.findall(r'(?:url\(#|href="#)([^)"]+)', svg)
        assert set(refs) <= set(own)  # every reference points into the same plot
        ids += own
    assert len(ids) == len(set(ids))
    assert "I-AUROC 90.0 %" in svgs[0] and "AUPRO 70.0 %" in svgs[2]  # text stays text


def test_histogram_geometry_places_the_threshold_inside_the_axes():
    svg, g = plots.histogram_plot(np.linspace(0, 1, 20), np.r_[np.zeros(10), np.ones(10)], 2.0, "t")
    assert 0 < g["x0"] < g["x1"] < 1 and 0 < g["y0"] < g["y1"] < 1
    assert g["xmin"] < 0 and g["xmax"] > 2.0  # a threshold outside the scores widens the axis


def test_json_script_cannot_close_its_tag_and_tables_escape():
    text = json_script("d", {"a": "</script><b>"})
    assert text.count("</script>") == 1 and json.loads(text[text.index(">") + 1 : text.rindex("<")]) == {
        "a": "</script><b>"
    }
    with pytest.raises(ValueError):
        json_script("d", {"a": float("nan")})  # the page's script could not parse NaN
    assert "&lt;b&gt;" in table(["x"], [["<b>"]])


def test_image_data_uri_is_a_small_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 2000, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    uri = image_data_uri(tmp_path / "big.png", max_width=500)
    assert uri.startswith("data:image/jpeg;base64,")
    import base64
    import io

    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert im.size == (500, 75)
