"""Task plugins read the official formats exactly, and bad data gets a one-line error naming the file."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data import DatasetSplit, TensorSplit
from bench.errors import BenchError
from bench.metrics import Outcome, example_stats
from bench.tasks.camvid import camvid
from bench.tasks.cifar import cifar10, cifar100
from bench.tasks.common import release, verify_md5
from bench.tasks.derived import classify_from_masks, dominant_labels
from bench.tasks.folders import image_folder, segmentation_folder
from bench.tasks.transforms import IMAGENET_MEAN, IMAGENET_STD
from bench.tasks.voc import voc2012
from tests.fixtures_data import (
    palette_png,
    write_camvid,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_voc,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data folder {SHARED} is absent (fresh clone)")


@pytest.fixture(autouse=True)
def private_cache(request, tmp_path, monkeypatch):
    """Fixture archives extract into a per-test cache; real-data tests keep the shared cache (extract once)."""
    if request.node.get_closest_marker("data") is None:
        monkeypatch.setenv("BENCH_DATA_CACHE", str(tmp_path / "cache"))


def red_class(x: torch.Tensor) -> torch.Tensor:
    """Recover the class encoded in the red channel by tests/fixtures_data.class_image."""
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



@pytest.mark.parametrize("workers", [0, 2])
def test_segmentation_augmentation_is_seeded(tmp_path, workers):
    """albumentations draws from its own generator: the same (seed, epoch) must give the same batches."""
    write_voc(tmp_path)
    split = voc2012(root=str(tmp_path), crop_size=32, eval_size=64, workers=workers).train

    def epoch(seed: int, e: int) -> list[torch.Tensor]:
        return [x for x, _ in split.batches(2, train=True, seed=seed, epoch=e)]

    first = epoch(0, 0)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(0, 0), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch(0, 1), strict=True))

def test_voc_layout_errors(tmp_path):
    write_voc(tmp_path)
    assert len(voc2012(root=str(tmp_path / "VOCdevkit"), workers=0).test) == 4  # VOCdevkit itself is fine too
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(BenchError, match=r"elsewhere: no VOCdevkit/VOC2012 here"):
        voc2012(root=str(tmp_path / "elsewhere"))
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



def test_cifar100_fine_labels_and_names(tmp_path):
    folder = write_cifar100(tmp_path)
    task = cifar100(root=str(tmp_path), test_subset=4)
    import pickle

    with open(folder / "test", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert task.info.num_classes == 100 and task.info.class_names[7] == "fine7"
    assert len(task.train) == 30 and task.test.labels.tolist() == raw[b"fine_labels"][:4]  # fine, not coarse
    assert task.test.images[3, 2, 31, 0] == raw[b"data"][3][2048 + 31 * 32]  # blue plane, last row, first col
    with pytest.raises(BenchError, match=r"train_subset: 0 must be a positive number"):
        cifar100(root=str(tmp_path), train_subset=0)


def _tarball(src: Path, dest: Path, arcname: str) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=arcname)
    return dest


def test_release_checks_md5_before_extracting(tmp_path):
    import hashlib

    folder = write_cifar10(tmp_path / "src", per_batch=2)
    archive = _tarball(folder, tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    url = archive.as_uri()  # urllib reads file:// like the official https URL
    dest = tmp_path / "dl"
    with pytest.raises(BenchError, match=r"dl/cifar-10-python.tar.gz.part: MD5 .* does not match the published 0+"):
        release(url, "0" * 32, dest, download_ok=True)
    assert sorted(p.name for p in dest.iterdir()) == []  # nothing extracted, no partial download left behind
    assert release(url, md5, dest, download_ok=True)
    assert (dest / "cifar-10-batches-py" / "test_batch").is_file()
    # an archive already in root (not downloaded by us) is verified too: the fixture is not the release
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(archive.read_bytes())
    with pytest.raises(BenchError, match=r"root/cifar-10-python.tar.gz: MD5 .* does not match the published c58f"):
        cifar10(root=str(root))
    assert not (root / "cifar-10-batches-py").exists()


def test_voc_targets_read_masks_only_and_match_the_loader(tmp_path):
    write_voc(tmp_path)
    task = voc2012(root=str(tmp_path), crop_size=32, eval_size=64, workers=0)
    assert isinstance(task.test, DatasetSplit)
    fast = task.test.targets()
    slow = torch.stack([task.test.eval_dataset[i][1] for i in range(len(task.test))])
    assert fast.dtype == torch.int64 and torch.equal(fast, slow)
    assert task.test.targets() is fast  # read once per split


def test_ignore_index_is_excluded_from_metrics(tmp_path):
    write_voc(tmp_path)
    task = voc2012(root=str(tmp_path), eval_size=64, workers=0)
    y = task.test.targets()
    assert (y == 255).any()
    wrong_on_ignore = torch.where(y == 255, 7, y)  # predictions differ from the target ONLY on ignored pixels
    metrics = Outcome(example_stats(wrong_on_ignore, y, task.info).numpy(), task.info).metrics()
    assert metrics["miou"] == 1.0 and metrics["pixel_accuracy"] == 1.0


def test_voc_pointed_inside_the_devkit_says_where_to_point(tmp_path):
    voc = write_voc(tmp_path)
    assert len(voc2012(root=str(voc), workers=0).test) == 4  # VOC2012 itself is accepted
    with pytest.raises(BenchError, match=rf"JPEGImages: this is inside the VOC2012 folder {voc}; set root to {voc}"):
        voc2012(root=str(voc / "JPEGImages"))


def test_camvid_errors_name_the_file(tmp_path):
    base = write_camvid(tmp_path)
    (base / "test" / "labels" / "f002.png").unlink()
    with pytest.raises(BenchError, match=r"test/images/f002.png: has no mask .*test/labels/f002.png"):
        camvid(root=str(base), workers=0)
    from PIL import Image

    Image.fromarray(np.full((36, 48), 12, dtype=np.uint8), mode="L").save(base / "test" / "labels" / "f002.png")
    task = camvid(root=str(base), workers=0)
    with pytest.raises(BenchError, match=r"test/labels/f002.png: mask value 12 is outside 0..10 and is not the "
                                         r"ignore index 11"):
        task.test.targets()
    for f in (base / "val" / "images").iterdir():
        f.unlink()
    with pytest.raises(BenchError, match=r"val/images: the split is empty"):
        camvid(root=str(base), test_split="val")


def test_camvid_twin_pairs_the_same_test_images_in_order(tmp_path):
    base = write_camvid(tmp_path, n=5)
    spec = {"name": "camvid", "root": str(base), "resize": [32, 48], "crop_size": [32, 48], "workers": 0}
    seg = camvid(**{k: v for k, v in spec.items() if k != "name"})
    twin = classify_from_masks(spec)
    y = seg.test.targets()
    assert len(twin.test) == len(seg.test) and twin.provenance["paired_with_source"]
    assert torch.equal(twin.test.targets(), dominant_labels(y, 11, 11, None))
    x_seg, _ = next(seg.test.batches(5, train=False))
    x_cls, labels = next(twin.test.batches(5, train=False))
    assert torch.equal(x_seg, x_cls) and torch.equal(labels, twin.test.targets())  # same pixels, same order
    assert twin.info.num_classes == 11 and twin.info.class_names[3] == "road"
    car = classify_from_masks({**spec}, rule="present_any", classes=[8], min_pixels=1000)
    assert car.info.num_classes == 2 and car.test.targets().tolist() == [0] * 5  # each car patch is 8x10 px
    with pytest.raises(BenchError, match=r"classify_from_masks.classes: rule present_any needs class indices"):
        classify_from_masks(spec, rule="present_any")


def test_dominant_rule_unlabelled_images():
    masks = torch.tensor([[[0, 2, 2, 2], [255, 1, 2, 0]], [[0, 0, 0, 255], [0, 0, 255, 255]]])
    assert dominant_labels(masks, 3, 255, skip=0).tolist() == [2, -1]  # second image: background only
    assert dominant_labels(masks, 3, 255, skip=None).tolist() == [2, 0]
    assert dominant_labels(torch.tensor([[[1, 2]]]), 3, None, None).tolist() == [1]  # tie -> lowest index


def test_classify_from_masks_background_keeps_pairing(tmp_path):
    voc = write_voc(tmp_path, n_train=3, n_val=3)
    palette_png(np.zeros((40, 48), dtype=np.uint8), voc / "SegmentationClass" / "2007_val0001.png")  # no object
    spec = {"name": "voc2012", "root": str(tmp_path), "eval_size": 64, "workers": 0}
    kept = classify_from_masks(spec)
    assert kept.test.targets()[1] == 0 and len(kept.test) == 3 and kept.provenance["paired_with_source"]
    dropped = classify_from_masks(spec, unlabelled="drop")
    assert len(dropped.test) == 2 and dropped.provenance["dropped_test_images"] == 1
    assert torch.equal(dropped.test.targets(), kept.test.targets()[[0, 2]])


def test_image_folder_streams_large_images_from_disk(tmp_path):
    src = write_image_folder(tmp_path / "big", size=80, per_class=2)
    task = image_folder(root=str(src), image_size=72, workers=0)  # > 64 px: read by workers, not held in RAM
    assert isinstance(task.train, DatasetSplit) and task.provenance["in_memory"] is False
    assert task.train.targets().tolist() == [0, 0, 1, 1, 2, 2]
    x, y = next(task.train.batches(6, train=True))
    assert x.shape == (6, 3, 72, 72) and sorted(y.tolist()) == [0, 0, 1, 1, 2, 2]
    small = image_folder(root=str(src), image_size=16)
    assert isinstance(small.train, TensorSplit) and small.train.images.shape[1:] == (3, 16, 16)


def test_image_folder_cache_follows_the_files(tmp_path):
    from PIL import Image

    src = write_image_folder(tmp_path / "f")
    before = image_folder(root=str(src)).train.images.clone()
    assert len(list((tmp_path / "cache" / "decoded").iterdir())) == 2  # train + test decoded once
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(src / "train" / "a_cls" / "0000.png")
    after = image_folder(root=str(src)).train.images
    assert (after[0] == 200).all() and not torch.equal(before[0], after[0])  # an edited file is not served stale


def test_segmentation_folder_brings_your_own_data(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (tmp_path / split / "img").mkdir(parents=True)
        (tmp_path / split / "lbl").mkdir(parents=True)
        for i in range(3):
            mask = rng.integers(0, 3, (20, 24), dtype=np.uint8)
            mask[0] = 9
            Image.fromarray(np.repeat(mask[..., None] * 12, 3, 2)).save(tmp_path / split / "img" / f"{i}.png")
            Image.fromarray(mask, mode="L").save(tmp_path / split / "lbl" / f"{i}.png")
    task = segmentation_folder(root=str(tmp_path), num_classes=3, ignore_index=9, class_names=["a", "b", "c"],
                               images="img", masks="lbl", crop_size=16, eval_size=(20, 24), workers=0)
    assert task.info.ignore_index == 9 and task.info.class_names == ("a", "b", "c")
    y = task.test.targets()
    assert y.shape == (3, 32, 32) and (y[:, 0] == 9).all() and (y[:, 20:] == 9).all()  # padded to /32 with ignore
    assert set(y[:, 1:20, :24].unique().tolist()) <= {0, 1, 2}
    with pytest.raises(BenchError, match=r"train: expected sub-folders images/ and masks/; set images/masks"):
        segmentation_folder(root=str(tmp_path), num_classes=3)


@pytest.mark.slow
def test_published_configs_run_on_fixtures(tmp_path):
    write_cifar10(tmp_path / "cifar", per_batch=12)
    small = ["--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=1", "--set", "train.batch_size=16",
             "--set", "seeds=[0]", "--quiet"]  # channels_last and amp: bf16 as published (bf16 emulated on an AVX2 CPU)
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
    # the twin's source is a YAML alias of the voc task: these reach it too (else it would download)
    voc = [f"--set=tasks.voc.root={tmp_path / 'voc'}",
           "--set", "tasks.voc.download=false", "--set", "tasks.voc.crop_size=32", "--set", "tasks.voc.workers=0",
           "--set", "tasks.voc.eval_size=64",
           "--set", "architectures.unet.width=4", "--set", "architectures.unet.depth=2",
           "--set", "architectures.unet_input_skip.width=4", "--set", "architectures.unet_input_skip.depth=2",
           "--set", "ablations.1.epochs=0.5", "--set", "train.eval_batch_size=4", "--set", "bootstrap=100"]
    assert main(["run", "configs/unet_voc.yaml", *small, *voc, "--out", str(tmp_path / "u")]) == 0
    res = json.loads((tmp_path / "u" / "results.json").read_text())
    ids = {c["id"] for c in res["cells"]}
    assert {"voc__unet__baseline__s0", "voc_cls__unet__no_identity__s0", "voc__unet__no_identity_level1__s0"} <= ids
    v = res["verdict"]  # one training step: the U-Net may sit exactly at chance (D undefined), then no headline row
    assert (v["headline"]["ablation"] == "skip_removal" if v["headline"] is not None
            else v["headline_missing"].startswith("no result for skip_removal on unet"))
    r = json.loads((tmp_path / "r" / "results.json").read_text())
    cells = {c["id"]: c for c in r["cells"]}
    assert {f"cifar10__{a}__{v}__s0" for a in ("resnet20", "resnet56", "resnet110")
            for v in ("baseline", "no_identity")} == set(cells)
    base = cells["cifar10__resnet110__baseline__s0"]
    assert base["status"] == "ok" and base["n_test"] == 8 and 0 <= base["metrics"]["accuracy"] <= 1
    assert {"block_lesion", "multi_lesion", "reorder", "path_gradients"} <= set(base["ablations"])
    assert r["verdict"] is None  # a single-task study has no verdict
    v = json.loads((tmp_path / "v" / "results.json").read_text())
    assert {c["id"] for c in v["cells"]} == {"cifar10__vgg__baseline__s0", "cifar10__plain56__baseline__s0"}
    assert all({"block_lesion", "multi_lesion"} <= set(c["ablations"]) for c in v["cells"])


@pytest.mark.data
@needs_shared
def test_real_voc_example():
    task = voc2012(root=str(SHARED / "voc-sample"), train_split="val", workers=0)
    y = task.test.targets()
    assert set(y.unique().tolist()) == {0, 9, 12, 255}  # palette indices survive, never RGB colours
    x, y_batch = next(task.test.batches(1, train=False))
    assert x.shape == (1, 3, 512, 512) and torch.equal(y_batch, y)  # padded to 512, pad = ignore
    counts = [int((y == c).sum()) for c in (9, 12)]
    twin = classify_from_masks({"name": "voc2012", "root": str(SHARED / "voc-sample"), "train_split": "val",
                                "workers": 0})
    assert twin.test.targets().tolist() == [(9, 12)[counts.index(max(counts))]]  # chair vs dog, by pixel count


@pytest.mark.data
@needs_shared
def test_real_camvid_archive():
    task = camvid(root=str(SHARED / "camvid.tar.gz"), resize=(48, 64), crop_size=(48, 64), workers=0)
    assert (len(task.train), len(task.test)) == (367, 233)
    x, y = next(task.test.batches(8, train=False))
    assert x.shape == (8, 3, 64, 64) and y.max() <= 11


@pytest.mark.data
@needs_shared
def test_real_cifar_jpegs():
    task = image_folder(root=str(SHARED / "cifar10-jpg.tar.gz"), train_per_class=20, test_per_class=10)
    assert task.info.class_names[:2] == ("airplane", "automobile") and len(task.test) == 100
    assert task.train.images.shape[1:] == (3, 32, 32)



def test_classify_among_keeps_only_the_listed_classes_and_every_image(tmp_path):
    """Stable twins (issue 26, item 4): CamVid's twin restricted to the classes enough training images are
    dominant in. Only the listed classes compete; labels are their places in the list; every test image stays,
    in order, when each has a listed class; the images are the source's."""
    from bench.tasks.twin_among import classify_among, dominant_among  # noqa: PLC0415

    masks = torch.tensor([[[8, 8, 8, 3]], [[1, 1, 3, 11]], [[8, 8, 8, 8]], [[5, 3, 11, 11]]])  # car-dominant, ...
    assert dominant_labels(masks, 11, 11, None).tolist() == [8, 1, 8, 3]
    assert dominant_among(masks, 11, 11, None, [0, 1, 3, 5]).tolist() == [2, 1, -1, 2]  # tie 3/5: lower index
    assert dominant_among(masks, 11, 11, None, [5, 3]).tolist() == [1, 1, -1, 1]  # place in the list, not index
    base = write_camvid(tmp_path, n=5)
    spec = {"name": "camvid", "root": str(base), "resize": [32, 48], "crop_size": [32, 48], "workers": 0}
    seg = camvid(**{k: v for k, v in spec.items() if k != "name"})
    kept = classify_among(spec, classes=[0, 1, 3, 5])
    assert kept.info.num_classes == 4 and kept.info.class_names == ("sky", "building", "road", "tree")
    assert torch.equal(kept.test.targets(), dominant_among(seg.test.targets(), 11, 11, None, [0, 1, 3, 5]))
    assert len(kept.test) == len(seg.test) and kept.provenance["paired_with_source"]
    x_seg, _ = next(seg.test.batches(5, train=False))
    x_cls, _ = next(kept.test.batches(5, train=False))
    assert torch.equal(x_seg, x_cls)
    with pytest.raises(BenchError, match=r"classify_among.classes: class indices must be in 0..10"):
        classify_among(spec, classes=[0, 11])
