"""synthetic_shapes' difficulty axis, ``texture_similarity`` (Kamath et al., MICCAI 2023): the background takes on
the objects' texture statistics, so a pixel's neighbourhood says less and less whether it lies on an object, while
the labels stay the same.

The probe is a local classifier: logistic regression (Newton steps, classes weighted to balance) on a pixel's 3×3
neighbourhood, with its quadratic terms (the 27 values, their squares, the squared differences to the centre: local
colour, contrast and edges), object vs background, scored by balanced accuracy (chance 0.5) on other images.
Measured with this file's probe (150 train / 150 test images, 120 pixels each; generator seeds 0..4):

* every pixel:       s = 0: 0.855-0.878, 0.25: 0.859-0.879, 0.5: 0.801-0.829, 0.8: 0.654-0.679, 0.9: 0.586-0.626,
                     1: 0.560-0.602 (what stays at 1 is the seams: an object's edge changes colour and texture,
                     which is what keeps the task learnable);
* seams left out (pixels whose 3×3 neighbourhood lies in one region, for fitting and scoring):
                     s = 0: 0.897-0.914, 0.5: 0.839-0.862, 0.9: 0.544-0.600, 1: 0.499-0.553.
Flat from 0 to about 0.25 (5-seed means 0.864 -> 0.868), falling from there; the tests use 0, 0.5, 0.9, 1
(configs/shapes_difficulty.yaml's hard level is 0.4: its comments say why). Each seed fell at every step of those four levels.

How each test was checked to fail (tasks/synthetic.py patched, seed 0; probe at 0, 0.5, 0.9, 1 / seamless at 1):
* the hashes: ``synthetic_shapes``' default ``texture_similarity`` set to 0.1, or the textured field drawn from the
  image generator ``g`` at every level, 0 included (every later draw shifts) -> the hash test fails;
* the probe: no blend (``texture_similarity`` ignored) -> 0.858 at every level / 0.903: both probe tests fail;
  the background's stripes dropped (``texture / 2 * 0``; at 1 only the objects are striped) -> 0.858, 0.848,
  0.766, 0.755 / 0.784: both fail; every background one fixed colour (``torch.full((3, 1, 1), 0.5)``) -> 0.858,
  0.899, 0.884, 0.873 / 0.915: both fail;
* the labels: the textured field drawn from ``g`` only when s > 0 -> the masks differ between levels, the labels
  test fails (alone); the objects blended too (the blend moved after the objects are painted) -> object pixels
  differ, the labels test fails (and the fall: 0.858, 0.543, 0.545, 0.498);
* provenance: the key removed -> both cases fail.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
import torch
import torch.nn.functional as F

from bench.tasks.synthetic import synthetic_shapes

LEVELS = (0.0, 0.5, 0.9, 1.0)
PROBE_IMAGES = 150  # per split

# Computed from the generator BEFORE the texture_similarity knob existed (commit a4cab90's tasks/synthetic.py):
# the default must reproduce every existing config and committed study byte for byte.
BEFORE_KNOB = {
    "default_pixel": "7963b5a16b601e4ae1b4a9c028193635f802f9e239c17c4befa617ab746d0895",  # synthetic_shapes("pixel")
    "seed3_image": "f860898b88f068db7eeb6ffd00335b2901a15d7e90ee215797c8b236e4cb5f6c",
    "other_knobs_pixel": "152180edf04fb398f5d3e58d9302fa35ef8dadb619336d6a6abf737760e2ba5a",
}
OTHER_KNOBS = dict(n_train=64, n_test=32, seed=0, max_objects=5, noise=0.1, texture=0.9, num_classes=6, image_size=24)


def task_hash(task) -> str:
    """sha256 over both splits' images and labels (dtype, shape, bytes)."""
    d = hashlib.sha256()
    for split in (task.train, task.test):
        for a in (split.images, split.labels):
            d.update(str(a.dtype).encode())
            d.update(str(tuple(a.shape)).encode())
            d.update(a.contiguous().numpy().tobytes())
    return d.hexdigest()


def test_default_reproduces_the_generator_from_before_the_knob():
    assert task_hash(synthetic_shapes("pixel")) == BEFORE_KNOB["default_pixel"]
    assert task_hash(synthetic_shapes("image", n_train=64, n_test=32, seed=3)) == BEFORE_KNOB["seed3_image"]
    assert task_hash(synthetic_shapes("pixel", texture_similarity=0.0, **OTHER_KNOBS)) == BEFORE_KNOB["other_knobs_pixel"]


def neighbourhoods(images: torch.Tensor, masks: torch.Tensor, per_image: int, seamless: bool,
                   g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadratic 3×3-neighbourhood features and object (1) / background (0) targets of ``per_image`` random pixels
    of each image (``seamless``: only pixels whose neighbourhood lies in one region)."""
    x = images.double() / 255
    n, c = x.shape[:2]
    patches = F.unfold(x, 3).reshape(n, c, 9, -1)  # (n, 3, 9, pixels with a full neighbourhood)
    labels = F.unfold(masks[:, None].double(), 3)  # (n, 9, pixels)
    eligible = labels.amax(1) == labels.amin(1) if seamless else torch.ones_like(labels[:, 0], dtype=torch.bool)
    score = torch.rand(eligible.shape, generator=g, dtype=torch.float64).masked_fill(~eligible, -1)
    pick = score.topk(per_image, 1).indices  # random eligible pixels (every image has more than per_image)
    q = patches.gather(3, pick[:, None, None, :].expand(n, c, 9, per_image)).permute(0, 3, 1, 2).reshape(-1, c, 9)
    y = (labels[:, 4].gather(1, pick) > 0).double().reshape(-1)
    d = q - q[:, :, 4:5]
    return torch.cat([q.flatten(1), (q**2).flatten(1), (d**2).flatten(1)], 1), y


@cache  # both probe tests read levels 0 and 1: generate each once
def shapes(level: float, seed: int, n: int):
    return synthetic_shapes("pixel", n_train=n, n_test=n, seed=seed, texture_similarity=level)


def local_probe(level: float, *, seamless: bool, seed: int = 0, n: int = PROBE_IMAGES, per_image: int = 120) -> float:
    """Balanced accuracy (chance 0.5) of a class-balanced logistic regression on 3×3 neighbourhoods, object vs
    background, fit on one split's images and scored on the other's."""
    task = shapes(level, seed, n)
    g = torch.Generator().manual_seed(0)
    x, y = neighbourhoods(task.train.images, task.train.labels, per_image, seamless, g)
    xt, yt = neighbourhoods(task.test.images, task.test.labels, per_image, seamless, g)
    mu, sd = x.mean(0), x.std(0) + 1e-6

    def design(a: torch.Tensor) -> torch.Tensor:
        return torch.cat([(a - mu) / sd, torch.ones(len(a), 1, dtype=a.dtype)], 1)

    z = design(x)
    weight = torch.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    beta = torch.zeros(z.shape[1], dtype=z.dtype)
    ridge = 1e-3 * torch.eye(len(beta), dtype=z.dtype)
    for _ in range(8):  # Newton (IRLS) steps on the weighted, ridge-penalised log-loss
        p = torch.sigmoid(z @ beta)
        grad = z.T @ (weight * (p - y)) / len(y) + ridge @ beta
        hess = (z * (weight * p * (1 - p))[:, None]).T @ z / len(y) + ridge
        beta = beta - torch.linalg.solve(hess, grad)
    pred = design(xt) @ beta > 0
    return 0.5 * (pred[yt > 0].double().mean() + (~pred[yt == 0]).double().mean()).item()


def test_local_evidence_of_the_objects_falls_along_the_axis():
    acc = [local_probe(s, seamless=False) for s in LEVELS]
    assert acc[0] > 0.8, f"easy level: a 3x3 classifier should find the objects: {acc[0]:.3f}"
    for (s0, a0), (s1, a1) in zip(zip(LEVELS, acc), zip(LEVELS[1:], acc[1:])):
        assert a1 < a0 - 0.01, f"no fall from texture_similarity {s0} to {s1}: {a0:.3f} -> {a1:.3f} ({acc})"
    assert acc[-1] < 0.65, f"at 1 only the seams should be left to a 3x3 classifier: {acc[-1]:.3f}"


def test_away_from_the_seams_a_local_classifier_is_near_chance_at_1():
    # the control first: the same seamless probe does read the objects at 0, so its chance at 1 is the knob's
    easy, hard = local_probe(0.0, seamless=True), local_probe(1.0, seamless=True)
    assert easy > 0.85, f"seamless probe cannot read the objects even at 0: {easy:.3f}"
    assert hard < 0.6, f"object interiors still told from background at texture_similarity 1: {hard:.3f}"


def test_labels_and_objects_are_the_same_at_every_level():
    tasks = [synthetic_shapes(target, n_train=48, n_test=16, seed=4, texture_similarity=s)
             for s in (0.0, 0.5, 1.0) for target in ("pixel", "image")]
    (seg0, cls0), rest = tasks[:2], tasks[2:]
    for seg, cls in zip(rest[::2], rest[1::2]):
        for a, b in ((seg0.train, seg.train), (seg0.test, seg.test)):
            assert torch.equal(a.labels, b.labels)  # the same label maps
            on_object = (a.labels > 0)[:, None].expand_as(a.images)
            assert torch.equal(a.images[on_object], b.images[on_object])  # objects (and their noise) untouched
            assert not torch.equal(a.images[~on_object], b.images[~on_object])  # the background moved
        for a, b in ((cls0.train, cls.train), (cls0.test, cls.test)):
            assert torch.equal(a.labels, b.labels)  # the same image labels, so the same class balance
            assert torch.equal(a.labels.bincount(minlength=4), b.labels.bincount(minlength=4))
        assert torch.equal(seg.train.images, cls.train.images)  # still paired: one image set, two targets


@pytest.mark.parametrize("level", [0.0, 0.9])
def test_provenance_records_the_level(level):
    task = synthetic_shapes("image", n_train=8, n_test=4, texture_similarity=level)
    assert task.provenance["texture_similarity"] == level
