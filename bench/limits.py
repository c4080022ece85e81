"""Documented ceilings: every number a study may give is bounded, so no input can run for ever or exhaust memory.

The schema's bounds (``le``/``ge`` in ``bench.config`` and in each plugin's signature or ``Params``) cite
these constants; ``validate`` refuses anything beyond them with one line. A study is also refused when
its estimated size is absurd (``study_size``): the estimate is deliberately simple, an upper bound on
what the run would hold at once, so it errs on the side of letting real studies through.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bench.errors import BenchError

MAX_EPOCHS = 10_000  # train.epochs, train.warmup_epochs, an ablation's own epochs
MAX_BATCH = 65_536  # train.batch_size, train.eval_batch_size, an ablation's batch_size
MAX_LR = 100.0
MAX_STEPS = 10_000_000  # train.max_steps_per_epoch
MAX_BOOTSTRAP = 10_000  # bootstrap replicates: a (replicates x test examples) float64 matrix per cell
MAX_SEEDS = 1_000
MAX_NAME = 48  # aliases and variant names become file names (<task>__<arch>__<variant>__s<seed>.*)
MAX_STUDY_NAME = 100
MAX_CELLS = 10_000  # trained models in one study: (pairs) x (seeds) x (1 + train-time variants)
MAX_MEMORY = 16 * 2**30  # bytes the estimate of one cell's in-memory data may reach
MAX_EXAMPLES = 10_000_000  # images in one split
MAX_IMAGE = 8_192  # pixels along one side
MAX_CLASSES = 100_000
MAX_WORKERS = 256  # DataLoader workers
MAX_COUNT = 1_000_000  # samples, repetitions, swaps, ... of one ablation setting
MAX_DEPTH = 1_000  # layers or blocks of a built-in network
MAX_WIDTH = 65_536  # channels of a built-in network
MAX_INT = 2**31 - 1  # any other integer parameter (seeds, indices): fits every tensor index type
MAX_FLOAT = 1e12  # any other real parameter without a bound of its own
MAX_PARAMETERS = 2_000_000_000  # of one model (counted on the meta device, before anything is allocated)
MAX_CONFIG_BYTES = 1 << 20  # a study config file
MAX_YAML_NODES = 100_000  # values a config expands to, anchors and aliases (*name) counted each time used
ASSUMED_TEST_EXAMPLES = 10_000  # for the memory estimate, when a task does not say (n_test / test_subset)


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


# Bounded types for plugin signatures: ``def unet(task, depth: Depth = 3)``; bench.params enforces them.
Examples = Annotated[int, Field(ge=1, le=MAX_EXAMPLES, description="number of images")]
Pixels = Annotated[int, Field(ge=1, le=MAX_IMAGE, description="pixels")]
Workers = Annotated[int, Field(ge=0, le=MAX_WORKERS, description="DataLoader worker processes")]
Scale = Annotated[float, Field(gt=0, le=100, description="scale factor")]
Classes = Annotated[int, Field(ge=1, le=MAX_CLASSES, description="number of classes")]
ClassIndex = Annotated[int, Field(ge=0, le=MAX_CLASSES, description="class index")]
Depth = Annotated[int, Field(ge=1, le=MAX_DEPTH, description="layers or levels")]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH, description="channels")]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Seed = Annotated[int, Field(ge=0, le=MAX_INT)]
Fraction = Annotated[float, Field(ge=0, le=1)]


def study_size(cells: int, largest_test: int, bootstrap: int) -> None:
    """Refuse a study whose cell count, or whose bootstrap matrix (replicates x test examples, float64, held per
    cell), is beyond the documented limits; ``largest_test`` is the largest test split the tasks declare."""
    if cells > MAX_CELLS:
        raise BenchError(f"the study has {cells:,} cells (pairs x seeds x (1 + train-time variants)), over the limit "
                         f"of {MAX_CELLS:,}; split it into several studies or use fewer seeds")
    need = bootstrap * largest_test * 8
    if need > MAX_MEMORY:
        raise BenchError(f"bootstrap: {bootstrap:,} replicates x {largest_test:,} test examples need {gib(need)} per "
                         f"cell, over the limit of {gib(MAX_MEMORY)}; lower bootstrap or the test split")
