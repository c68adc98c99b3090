"""Shortcut audit (pure): the shape of an image must not tell its label; the audit says when it does."""

from __future__ import annotations

from medimage.core.shortcuts import audit_shapes


def test_aspect_ratio_that_separates_the_classes_is_flagged() -> None:
    # GIVEN normal X-rays about 1.2 wide per unit of height and pneumonia X-rays about 1.5 (as in
    # ChestXRay2017's full-resolution images), all of similar size
    labels = ["normal"] * 8 + ["pneumonia"] * 8
    normal_widths = [1200, 1190, 1230, 1250, 1210, 1220, 1180, 1240]
    widths = [*normal_widths, 1500, 1480, 1510, 1550, 1490, 1520, 1530, 1470]
    heights = [1000] * 16
    # WHEN audited
    report = audit_shapes(labels, widths, heights, ["normal", "pneumonia"])
    # THEN the aspect ratio is a perfect cue for both classes, and a warning names it
    assert report["aspect_ratio"]["pneumonia"] == {"median": 1.505, "auc": 1.0}
    assert report["aspect_ratio"]["normal"]["auc"] == 0.0
    [warning] = [w for w in report["warnings"] if w.startswith("aspect_ratio")]
    assert "aspect_ratio alone tells 'normal' from the rest (AUC 0.00, 'normal' lower)" in warning


def test_shapes_unrelated_to_the_label_raise_no_warning() -> None:
    labels = ["a", "b"] * 10
    widths = [1000 + 10 * (i % 5) for i in range(20)]
    heights = [800 + 10 * ((i // 2) % 3) for i in range(20)]
    report = audit_shapes(labels, widths, heights, ["a", "b"])
    assert report["warnings"] == []
    assert 0.25 <= report["aspect_ratio"]["a"]["auc"] <= 0.75


def test_classes_with_too_few_images_are_left_out() -> None:
    report = audit_shapes(["a"] * 10 + ["b"] * 2, [100] * 12, [100] * 12, ["a", "b"])
    assert report["aspect_ratio"] == {} and report["warnings"] == []
