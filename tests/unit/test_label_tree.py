"""The one rule by which training, ingest and the demo read a folder-per-label tree."""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest

from medimage.core.images import IMAGE_SUFFIXES
from medimage.core.label_tree import (
    HIDDEN,
    NOT_AN_IMAGE_SUFFIX,
    NOT_IN_LABEL_FOLDER,
    OS_CLUTTER,
    files_by_label,
    image_files,
    scan_label_tree,
    skip_reason,
    walk_label_tree,
)


def make(root: Path, *relatives: str) -> None:
    for relative in relatives:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x")


def taken(root: Path) -> list[tuple[str, str]]:
    return [(label, path.relative_to(root).as_posix()) for label, path in walk_label_tree(root)]


def test_every_image_suffix_the_pipeline_reads_is_taken_in_any_case(tmp_path: Path) -> None:
    names = [f"A/x{suffix}" for suffix in sorted(IMAGE_SUFFIXES)] + ["A/upper.JPG", "A/scan.DCM"]
    make(tmp_path, *names)
    assert sorted(path for _, path in taken(tmp_path)) == sorted(names)


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("A/.hidden.jpeg", HIDDEN),
        ("A/._x.jpeg", HIDDEN),  # macOS AppleDouble
        (".git/objects/x.png", HIDDEN),
        ("A/.cache/x.png", HIDDEN),
        ("A/.DS_Store", OS_CLUTTER),
        ("A/Thumbs.db", OS_CLUTTER),
        ("A/thumbs.db", OS_CLUTTER),
        ("A/desktop.ini", OS_CLUTTER),
        ("__MACOSX/A/x.jpeg", OS_CLUTTER),
        ("A/__MACOSX/x.jpeg", OS_CLUTTER),
        ("README.txt", NOT_IN_LABEL_FOLDER),
        ("top.jpeg", NOT_IN_LABEL_FOLDER),
        ("A/notes.txt", NOT_AN_IMAGE_SUFFIX),
        ("A/labels.csv", NOT_AN_IMAGE_SUFFIX),
        ("A/no-suffix", NOT_AN_IMAGE_SUFFIX),
        ("A/x.tiff", NOT_AN_IMAGE_SUFFIX),
    ],
)
def test_what_is_skipped_and_why(tmp_path: Path, relative: str, reason: str) -> None:
    assert skip_reason(PurePath(relative)) == reason
    make(tmp_path, relative, "A/kept.png")
    tree = scan_label_tree(tmp_path)
    assert [(f.label, f.path) for f in tree.files] == [("A", tmp_path / "A/kept.png")]
    assert [(s.path, s.reason) for s in tree.skipped] == [(tmp_path / relative, reason)]


def test_nested_folders_keep_the_top_folder_as_label(tmp_path: Path) -> None:
    make(tmp_path, "PNEUMONIA/site-1/2024/x.jpeg", "NORMAL/y.png")
    assert taken(tmp_path) == [("NORMAL", "NORMAL/y.png"), ("PNEUMONIA", "PNEUMONIA/site-1/2024/x.jpeg")]


def test_order_is_sorted_by_path_whatever_the_creation_order(tmp_path: Path) -> None:
    names = ["b/2.png", "a/z.png", "b/1/9.png", "a/a.png", "a-b/x.png", "b/10.png"]
    make(tmp_path, *names)
    expected = sorted(names, key=lambda name: PurePath(name).parts)
    assert [path for _, path in taken(tmp_path)] == expected
    assert taken(tmp_path) == taken(tmp_path)


def test_a_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        scan_label_tree(tmp_path / "nope")


def test_training_ingest_and_the_demo_read_the_same_files(tmp_path: Path) -> None:
    from medimage.core.presets import get_preset
    from medimage.local.demo_data import scan as demo_scan
    from medimage.ops.ingest import plan_files
    from medimage.training.runner import scan_tree

    make(
        tmp_path,
        "a/1.png",
        "a/deep/2.jpeg",
        "b/3.dcm",
        "b/.4.png",
        "b/Thumbs.db",
        "b/notes.txt",
        ".trash/5.png",
        "__MACOSX/b/6.png",
        "README.txt",
    )
    preset = get_preset("folders")
    expected = [tmp_path / "a/1.png", tmp_path / "a/deep/2.jpeg", tmp_path / "b/3.dcm"]
    assert [path for _, path in walk_label_tree(tmp_path)] == expected
    assert [image.path for image in scan_tree(tmp_path, preset).images] == [p.resolve() for p in expected]
    uploads, left_out = plan_files(tmp_path, "ds")
    assert [local.path for local in uploads] == expected
    assert len(left_out) == 6
    assert [f.path for f in demo_scan(tmp_path, preset)] == expected


def test_files_by_label_groups_what_the_walker_takes(tmp_path: Path) -> None:
    make(tmp_path, "b/2.png", "a/deep/1.jpeg", "a/0.png", "a/.hidden.png", "c/notes.txt")
    grouped = files_by_label(tmp_path)
    assert list(grouped) == ["a", "b"]  # a folder with no image has no group
    assert grouped["a"] == [tmp_path / "a/0.png", tmp_path / "a/deep/1.jpeg"]


def test_image_files_take_a_folder_of_images_at_any_depth_by_the_same_rule(tmp_path: Path) -> None:
    make(tmp_path, "top.png", "x/1.jpeg", "x/Thumbs.db", ".cache/2.png", "x/notes.txt", "y/z/3.DCM")
    assert image_files(tmp_path) == [tmp_path / "top.png", tmp_path / "x/1.jpeg", tmp_path / "y/z/3.DCM"]
    with pytest.raises(NotADirectoryError):
        image_files(tmp_path / "missing")
