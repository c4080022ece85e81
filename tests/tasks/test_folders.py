"""Folder tasks fit the data: sizes from the images, no silent crops, errors that list what exists."""

from __future__ import annotations

import warnings

import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.tasks.folders import image_folder, segmentation_folder
from tests.fixtures_data import write_image_folder, write_seg_folder


def test_sizes_default_from_the_data(tmp_path):
    root = write_seg_folder(tmp_path, size=(32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fitting defaults warn about nothing
        task = segmentation_folder(root=str(root), num_classes=3, test_split="test", workers=0)
    assert task.info.image_size == (32, 32)  # not the 256 crop that made 32 px images crawl
    assert task.test.targets().shape == (3, 32, 32)  # evaluated at their own size
    assert task.provenance["crop_size"] == 32 and task.provenance["eval_size"] == [32, 32]


def test_a_crop_far_larger_than_the_images_warns_with_the_size_to_use(tmp_path):
    root = write_seg_folder(tmp_path, size=(32, 32))
    with pytest.warns(UserWarning, match=r"crop_size 256 is 8\.0x .* set crop_size: 32"):
        segmentation_folder(root=str(root), num_classes=3, test_split="test", crop_size=256, workers=0)


def test_an_image_larger_than_eval_size_is_an_error_not_a_silent_crop(tmp_path):
    root = write_seg_folder(tmp_path, size=(32, 32), big=(40, 72))
    with pytest.raises(BenchError, match=r"test/images/2\.png: test image is 40x72, larger than eval_size \[32, 32\]"
                                         r".*set eval_size: \[64, 96\]"):
        segmentation_folder(root=str(root), num_classes=3, test_split="test", eval_size=(32, 32), workers=0)
    task = segmentation_folder(root=str(root), num_classes=3, test_split="test", workers=0)  # unset: fits the largest
    assert task.test.targets().shape == (3, 64, 96)


def test_a_missing_split_lists_the_folders_that_exist(tmp_path):
    root = write_seg_folder(tmp_path, splits=("train", "test"))
    with pytest.raises(BenchError, match=r"val: split folder not found; .* holds: test, train; set test_split"):
        segmentation_folder(root=str(root), num_classes=3)  # the default test split is `val`
    src = write_image_folder(tmp_path / "cls")
    with pytest.raises(BenchError, match=r"val: split folder not found; .* holds: test, train"):
        image_folder(root=str(src), test_split="val")


def test_validate_checks_data_roots(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tasks:\n  seg: {name: segmentation_folder, root: /nonexistent/data, num_classes: 3}\n"
                      "architectures: {u: {name: unet, depth: 2, width: 4}}\nablations: [{name: skip_lesion}]\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "tasks.seg: root /nonexistent/data: not found" in err and err.count("\n") == 1
    write_seg_folder(tmp_path / "data")
    config.write_text(config.read_text().replace("/nonexistent/data", str(tmp_path / "data")))
    assert main(["validate", str(config)]) == 0
