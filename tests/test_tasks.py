"""Task plugins read the official formats exactly, and bad data gets a one-line error naming the file."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.errors import BenchError
from bench.tasks.camvid import camvid
from bench.tasks.cifar import cifar10
from bench.tasks.common import verify_md5
from bench.tasks.derived import classify_from_masks
from bench.tasks.folders import image_folder
from bench.tasks.transforms import IMAGENET_MEAN, IMAGENET_STD
from bench.tasks.voc import voc2012
from tests.formats import palette_png, write_camvid, write_cifar10, write_image_folder, write_voc

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data folder {SHARED} is absent (fresh clone)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_CACHE", str(tmp_path / "cache"))


def red_class(x: torch.Tensor) -> torch.Tensor:
    """Recover the class encoded in the red channel by tests/formats.class_image."""
    red = x[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return (red * 255 / 12).round().long()


def test_cifar_pickle_pixels_land_where_the_release_puts_them(tmp_path):
    folder = write_cifar10(tmp_path)
    task = cifar10(root=str(tmp_path))
    assert task.info.num_classes == 10 and task.info.class_names[0] == "airplane"
    assert len(task.train) == 100 and len(task.test) == 20
    import pickle

    with open(folder / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    # row-major 1024 R, then 1024 G, then 1024 B: value at (c=1, h=3, w=5) of the 1st image of batch 2
    assert task.train.images[20, 1, 3, 5] == raw[b"data"][0][1024 + 3 * 32 + 5]
    assert task.train.labels[20] == raw[b"labels"][0]
    assert len(cifar10(root=str(tmp_path), train_subset=7).train) == 7


def test_cifar_errors(tmp_path):
    with pytest.raises(BenchError, match=r"cifar-10-batches-py: CIFAR-10 not found; set download: true"):
        cifar10(root=str(tmp_path))
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(BenchError, match=r"data_batch_3: missing CIFAR batch"):
        cifar10(root=str(tmp_path))
    blob = tmp_path / "x.tar.gz"
    blob.write_bytes(b"not the release")
    with pytest.raises(BenchError, match=r"x.tar.gz: MD5 .* does not match the published c58f"):
        verify_md5(blob, "c58f30108f718f92721af3b95e74349a")


def test_voc_palette_masks_are_indices_and_augmentation_keeps_alignment(tmp_path):
    voc = write_voc(tmp_path)
    task = voc2012(root=str(tmp_path), crop_size=32, eval_size=64, workers=0)
    assert task.info.num_classes == 21 and task.info.ignore_index == 255 and len(task.test) == 4
    masks = task.test.targets()
    from PIL import Image

    first = np.array(Image.open(voc / "SegmentationClass" / "2007_val0000.png"))
    assert torch.equal(masks[0, :40, :48], torch.from_numpy(first.astype(np.int64)))  # indices, not colours
    assert (masks[0, 40:] == 255).all()  # eval padding is ignored
    for x, y in task.train.batches(6, train=True, seed=3):
        f = y[:, None].float()
        interior = (torch.nn.functional.max_pool2d(f, 5, 1, 2) == -torch.nn.functional.max_pool2d(-f, 5, 1, 2))[:, 0]
        valid = (y != 255) & (y > 0) & interior  # away from edges, where resampling blends classes
        assert valid.any()
        agree = (red_class(x)[valid] == y[valid]).float().mean()
        assert agree > 0.97, agree  # scale/crop/flip moved image and mask together


def test_voc_layout_errors(tmp_path):
    write_voc(tmp_path)
    assert len(voc2012(root=str(tmp_path / "VOCdevkit"), workers=0).test) == 4  # VOCdevkit itself is fine too
    with pytest.raises(BenchError, match=r"no VOCdevkit/VOC2012 here"):
        voc2012(root=str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages"))
    with pytest.raises(BenchError, match=r"train_aug.txt: split list or SegmentationClassAug/ missing \(SBD"):
        voc2012(root=str(tmp_path), train_split="train_aug")
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "SegmentationClass" / "2007_val0001.png").unlink()
    with pytest.raises(BenchError, match=r"2007_val0001.jpg: has no mask .*2007_val0001.png"):
        voc2012(root=str(tmp_path))
    palette_png(np.full((40, 48), 30, dtype=np.uint8), voc / "SegmentationClass" / "2007_val0001.png")
    task = voc2012(root=str(tmp_path), workers=0)
    with pytest.raises(BenchError, match=r"2007_val0001.png: mask value 30 is outside 0..20"):
        task.test.targets()
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(BenchError, match=r"val.txt: the split is empty"):
        voc2012(root=str(tmp_path))


def test_camvid_folder_and_archive(tmp_path):
    base = write_camvid(tmp_path / "src")
    archive = tmp_path / "camvid.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(base, arcname="camvid")
    for root in (base, archive):
        task = camvid(root=str(root), resize=(32, 48), crop_size=(32, 48), workers=0)
        assert task.info.ignore_index == 11 and len(task.train) == 4 and len(task.test) == 4
        y = task.test.targets()
        assert set(y.unique().tolist()) <= {0, 3, 8, 11} and (y[:, :3] == 11).all()
    truncated = tmp_path / "broken.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(BenchError, match=r"broken.tar.gz: cannot extract .* truncated or corrupt"):
        camvid(root=str(truncated))
    with pytest.raises(BenchError, match=r"camvid: CamVid data not found"):
        camvid(root=str(tmp_path / "camvid"))


def test_image_folder_from_tar_with_sorted_classes(tmp_path):
    src = write_image_folder(tmp_path / "folder")
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(src / split, arcname=split)
    task = image_folder(root=str(archive))
    assert task.info.class_names == ("a_cls", "b_cls", "c_cls") and len(task.train) == 9
    assert task.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert int(task.train.images[3].float().mean().round()) in (0, 1)  # b_cls was written with value 0
    assert len(image_folder(root=str(src), train_per_class=2).train) == 6
    with pytest.raises(BenchError, match=r"folder/val: split folder not found"):
        image_folder(root=str(src), test_split="val")


def test_classify_from_masks_keeps_the_same_images():
    spec = {"name": "synthetic_shapes", "target": "pixel", "n_train": 40, "n_test": 20, "image_size": 16}
    twin = classify_from_masks(spec)
    from bench.tasks.synthetic import dominant_class, synthetic_shapes

    seg = synthetic_shapes(**{k: v for k, v in spec.items() if k != "name"})
    assert torch.equal(twin.test.images, seg.test.images)
    assert torch.equal(twin.test.labels, dominant_class(seg.test.labels, 5))
    assert twin.info.kind == "classification" and twin.info.num_classes == 5
    with pytest.raises(BenchError, match=r"is a classification task; give a segmentation task"):
        classify_from_masks({"name": "synthetic_shapes", "target": "image", "n_train": 8, "n_test": 4})


def test_published_configs_run_on_fixtures(tmp_path):
    write_cifar10(tmp_path / "cifar", per_batch=12)
    small = ["--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=1", "--set", "train.batch_size=16",
             "--set", "seeds=[0]", "--set", "train.amp=off", "--set", "train.channels_last=false", "--quiet"]
    cifar = ["--set", f"tasks.cifar10.root={tmp_path / 'cifar'}", "--set", "tasks.cifar10.download=false",
             "--set", "tasks.cifar10.test_subset=8"]
    resnet = ["--set", "ablations.1.max_k=2", "--set", "ablations.1.samples=1", "--set", "ablations.2.swaps=[1]",
              "--set", "ablations.2.samples=1", "--set", "ablations.3.samples_per_k=2", "--set", "ablations.3.ks=[0,1]",
              "--set", "architectures.resnet110.depth=14", "--set", "architectures.resnet56.depth=8"]
    assert main(["run", "configs/resnet_cifar10.yaml", *small, *cifar, *resnet, "--out", str(tmp_path / "r")]) == 0
    vgg = ["--set", "architectures.vgg.width=4", "--set", "architectures.plain56.depth=8",
           "--set", "ablations.1.max_k=2", "--set", "ablations.1.samples=1"]
    assert main(["run", "configs/vgg_cifar10.yaml", *small, *cifar, *vgg, "--out", str(tmp_path / "v")]) == 0
    write_voc(tmp_path / "voc")
    voc = [f"--set=tasks.voc.root={tmp_path / 'voc'}", f"--set=tasks.voc_cls.source.root={tmp_path / 'voc'}",
           "--set", "tasks.voc.download=false", "--set", "tasks.voc.crop_size=32", "--set", "tasks.voc.workers=0",
           "--set", "tasks.voc_cls.source.crop_size=32", "--set", "tasks.voc_cls.source.workers=0",
           "--set", "tasks.voc.eval_size=64", "--set", "tasks.voc_cls.source.eval_size=64",
           "--set", "architectures.unet.width=4", "--set", "architectures.unet.depth=2",
           "--set", "architectures.unet_input_skip.width=4", "--set", "architectures.unet_input_skip.depth=2",
           "--set", "ablations.1.epochs=0.5", "--set", "train.eval_batch_size=4", "--set", "bootstrap=100"]
    assert main(["run", "configs/unet_voc.yaml", *small, *voc, "--out", str(tmp_path / "u")]) == 0
    res = json.loads((tmp_path / "u" / "results.json").read_text())
    ids = {c["id"] for c in res["cells"]}
    assert {"voc__unet__baseline__s0", "voc_cls__unet__no_identity__s0", "voc__unet__no_identity_level1__s0"} <= ids
    assert res["verdict"]["headline"]["ablation"] == "skip_removal"
    r = json.loads((tmp_path / "r" / "results.json").read_text())
    assert {c["architecture"] for c in r["cells"]} == {"resnet20", "resnet56", "resnet110"}


@needs_data
def test_real_voc_example():
    task = voc2012(root=str(SHARED / "voc-sample"), train_split="val", workers=0)
    y = task.test.targets()
    assert set(y.unique().tolist()) == {0, 9, 12, 255}


@needs_data
def test_real_camvid_archive():
    task = camvid(root=str(SHARED / "camvid.tar.gz"), resize=(48, 64), crop_size=(48, 64), workers=0)
    assert (len(task.train), len(task.test)) == (367, 233)
    x, y = next(task.test.batches(8, train=False))
    assert x.shape == (8, 3, 64, 64) and y.max() <= 11


@needs_data
def test_real_cifar_jpegs():
    task = image_folder(root=str(SHARED / "cifar10-jpg.tar.gz"), train_per_class=20, test_per_class=10)
    assert task.info.class_names[:2] == ("airplane", "automobile") and len(task.test) == 100
    assert task.train.images.shape[1:] == (3, 32, 32)
