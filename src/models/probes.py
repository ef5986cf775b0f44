"""Building a probe database: generate, check, rasterize, encode and write, block by block.

A build of ``count`` probes is cut into blocks of ``block_size``; block ``b`` is drawn by
``layout``'s generator from a seed derived from (build seed, ``b``) alone, so any block can be
made anywhere, in any order, and always comes out the same. That one property gives the rest:

* **Shards** (``--shard i/n``): shard ``i`` makes the blocks ``b`` with ``b % n == i``; read
  together (``dataset.probes_file.read_probes``) they are the single build, row for row.
* **Resume**: every finished block is written at once to ``OUTPUT.parts/block-B.h5`` (each file
  atomic); a killed build made again with ``--resume`` skips the blocks on disk, and the final
  file, assembled from the blocks in order, is bit-identical to an uninterrupted build's.
* **A cluster**: shards are tasks on ``dask.distributed`` (:func:`build_on_cluster`).

Constraints the user tightens at build time (MOCLIP's point: no retraining) are the
generator's: periods, thicknesses, primitive kinds, maximum primitives, and a larger minimum
feature or gap than the fabrication rule (never a smaller one: the chip must still pass DRC).
``--exclude`` drops designs of another library (e.g. the training designs) from every block.

Where the time goes on two cores (``benchmarks/bench_design.py``): the encoder takes ~60 % of a
build even in bf16, generation and checking ~15 %, rasterizing ~20 %; overlapping generation with
encoding in a thread was measured slower than doing them in turn, so it is an option, not the
default. A build of many shards spreads over processes or machines instead (``--shards``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from common.cluster import DaskCluster
from common.values import Bounds
from dataset.probes_file import ProbeBlock, ShardHeader, read_blocks, write_shard
from layout.design import DesignLibrary, Kind
from layout.design_space import DesignSpace
from layout.generator import GeneratorConfig, generate
from layout.raster import rasterize
from layout.rules import DesignRules
from models.inference import InferenceConfig, encode_geometry, prepare
from models.model_dir import load_model, model_identity

log = logging.getLogger(__name__)

BLOCK_SIZE = Bounds(64, 1 << 20, integer=True)
THICKNESS_NM = Bounds(10.0, 5000.0, unit="nm")
KIND_NAMES = {k.name.lower(): k for k in (Kind.RECTANGLE, Kind.ELLIPSE, Kind.RING)}
PARTS_SUFFIX = ".parts"


@dataclass(frozen=True)
class ProbeConstraints:
    """What a probe may be; defaults are the generator's and the fab's own rules."""

    periods_nm: tuple[int, ...] = (300, 400, 500, 600)
    thicknesses_nm: tuple[float, ...] = (150.0, 178.0, 195.0)
    kinds: tuple[str, ...] = ("rectangle", "ellipse", "ring")
    max_primitives: int = 4
    min_feature_nm: float | None = None  # None: the fab rule
    min_gap_nm: float | None = None

    def __post_init__(self) -> None:
        THICKNESS_NM.check_all("thickness_nm", self.thicknesses_nm)
        unknown = [k for k in self.kinds if k not in KIND_NAMES]
        if unknown or not self.kinds:
            raise ValueError(f"kinds {list(self.kinds)} must be among {', '.join(KIND_NAMES)}")
        fab = DesignRules()
        for name, value, rule in (
            ("min_feature_nm", self.min_feature_nm, fab.min_feature_nm),
            ("min_gap_nm", self.min_gap_nm, fab.min_gap_nm),
        ):
            if value is not None:
                Bounds(rule, 1000.0, unit="nm").check(f"{name} (fab rule {rule:g} nm)", value)
        self.generator_config()  # periods and primitive counts are checked by the generator

    def rules(self) -> DesignRules:
        """The fab rules, tightened: a larger gap also widens the border margin (half a gap)
        so that two neighbouring pads still see the larger gap."""
        fab = DesignRules()
        gap = self.min_gap_nm if self.min_gap_nm is not None else fab.min_gap_nm
        feature = self.min_feature_nm if self.min_feature_nm is not None else fab.min_feature_nm
        return replace(
            fab,
            min_gap_nm=gap,
            min_feature_nm=feature,
            min_size_nm=max(fab.min_size_nm, feature),
            border_margin_nm=max(fab.border_margin_nm, gap / 2),
        )

    def design_space(self) -> DesignSpace:
        """The same constraints as a box for optimizers (:mod:`layout.design_space`)."""
        return DesignSpace(
            periods_nm=tuple(int(p) for p in self.periods_nm),
            thicknesses_nm=tuple(float(t) for t in self.thicknesses_nm),
            kinds=tuple(KIND_NAMES[k] for k in self.kinds),
            max_primitives=self.max_primitives,
            rules=self.rules(),
        )

    def generator_config(self, batch_size: int = 4096) -> GeneratorConfig:
        return GeneratorConfig(
            periods_nm=tuple(int(p) for p in self.periods_nm),
            max_primitives=self.max_primitives,
            kinds=tuple(KIND_NAMES[k] for k in self.kinds),
            rules=self.rules(),
            batch_size=batch_size,
        )


@dataclass(frozen=True)
class ProbeBuild:
    """Everything that decides a build's blocks (recorded whole in every shard)."""

    count: int
    seed: int = 0
    block_size: int = 4096
    constraints: ProbeConstraints = field(default_factory=ProbeConstraints)
    exclude_sha256: str | None = None  # of the excluded design ids, sorted
    exclude_count: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count {self.count} must be >= 1")
        BLOCK_SIZE.check("block_size", self.block_size)

    @property
    def blocks(self) -> int:
        return -(-self.count // self.block_size)

    def block_length(self, b: int) -> int:
        return min(self.block_size, self.count - b * self.block_size)

    def to_dict(self) -> dict[str, Any]:
        """As JSON values (tuples as lists), so it compares equal to a shard's stored copy."""
        as_json: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return as_json


@dataclass(frozen=True)
class Shard:
    """``i/n``: this process makes the blocks ``b % n == i``."""

    index: int = 0
    count: int = 1

    @staticmethod
    def parse(text: str) -> Shard:
        try:
            i_text, n_text = text.split("/")
            i, n = int(i_text), int(n_text)
        except ValueError:
            raise ValueError(f"--shard {text!r} must be I/N, e.g. 0/4") from None
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
        return Shard(i, n)

    def blocks(self, build: ProbeBuild) -> list[int]:
        return list(range(self.index, build.blocks, self.count))


def exclusion_key(design_ids: NDArray[np.int64]) -> str:
    """The sha256 of a set of design ids: a resumed build must exclude the same designs."""
    return hashlib.sha256(np.unique(design_ids).astype("<i8").tobytes()).hexdigest()


def block_seed(seed: int, b: int) -> int:
    return int(np.random.SeedSequence([seed, b, 0x5EED]).generate_state(1, np.uint64)[0] >> 1)


def draw_block(
    build: ProbeBuild, b: int, exclude: NDArray[np.int64] | None = None
) -> tuple[DesignLibrary, NDArray[np.float64]]:
    """Block ``b``'s designs and thicknesses: a pure function of (build, b, exclude)."""
    want = build.block_length(b)
    cfg = build.constraints.generator_config()
    extra = want // 8 + 16 if exclude is not None and exclude.size else 0
    while True:
        lib = generate(want + extra, block_seed(build.seed, b), cfg)
        if exclude is not None and exclude.size:
            lib = lib.take(np.flatnonzero(~np.isin(lib.design_id, exclude))[:want])
        if len(lib) >= want:
            break
        extra = 2 * extra + want  # the excluded library held many of this block's draws
    rng = np.random.default_rng([build.seed, b, 1])
    options = np.asarray(build.constraints.thicknesses_nm, dtype=np.float64)
    thickness = options[rng.integers(0, options.size, want)]
    return lib.take(slice(0, want)), thickness


Encoder = Callable[[NDArray[np.bool_], NDArray[np.float64]], NDArray[np.float32]]


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + PARTS_SUFFIX)


def _part_path(parts: Path, b: int) -> Path:
    return parts / f"block-{b:07d}.h5"


def build_shard(
    output: Path,
    build: ProbeBuild,
    shard: Shard,
    encoder: Encoder,
    model_identity: str,
    embed_dim: int,
    *,
    exclude: NDArray[np.int64] | None = None,
    resume: bool = False,
    progress: bool = False,
    stop_after_blocks: int | None = None,
    prefetch: bool = False,
) -> Path:
    """Make this shard's blocks (skipping finished ones with ``resume``) and assemble them into
    ``output``. ``stop_after_blocks`` stops early, as a kill would (for tests). ``prefetch``
    draws and rasterizes the next block in a thread while this one is encoded; measured on two
    cores it is slower (~3.2k vs ~3.8k designs/s: the thread and torch's two fight for the
    cores), so it is off unless asked for (``benchmarks/bench_design.py`` measures both)."""
    output = Path(output)
    if (exclusion_key(exclude) if exclude is not None else None) != build.exclude_sha256:
        raise ValueError(
            "the designs to exclude are not the build's (ProbeBuild.exclude_sha256 must be "
            "exclusion_key of them), so a resume could not tell a change of exclusions"
        )
    header = ShardHeader(
        model_identity=model_identity,
        embed_dim=embed_dim,
        build=build.to_dict(),
        shard_index=shard.index,
        shard_count=shard.count,
        blocks=tuple(shard.blocks(build)),
    )
    parts = parts_dir(output)
    done = _finished_blocks(parts, header, resume)
    todo = [b for b in header.blocks if b not in done]
    total = sum(build.block_length(b) for b in header.blocks)
    made = 0
    with tqdm(
        total=total,
        initial=sum(build.block_length(b) for b in done),
        desc="probes",
        unit="design",
        disable=not progress,
    ) as bar:
        drawn = (
            _prefetched(todo, build, exclude)
            if prefetch
            else ((b, _block_inputs(build, b, exclude)) for b in todo)
        )
        for b, (lib, thickness, images) in drawn:
            params = np.stack([lib.period_nm, thickness], axis=1) / 1000.0
            latent = encoder(images, params)
            block = ProbeBlock(b, lib, thickness, latent)
            write_shard(_part_path(parts, b), replace(header, blocks=(b,)), [block])
            bar.update(len(lib))
            made += 1
            if stop_after_blocks is not None and made >= stop_after_blocks:
                return output
    blocks = [read_blocks(_part_path(parts, b))[1][0] for b in header.blocks]
    write_shard(output, header, blocks)
    shutil.rmtree(parts)
    return output


def _finished_blocks(parts: Path, header: ShardHeader, resume: bool) -> set[int]:
    """Blocks already on disk for this very build (checked field by field), or none."""
    if not parts.exists():
        if resume:
            log.info("--resume: no unfinished build at %s; starting afresh", parts)
        parts.mkdir()
        return set()
    if not resume:
        raise FileExistsError(
            f"{parts} holds an unfinished build; continue it with --resume, or remove it"
        )
    done = set()
    for b in header.blocks:
        path = _part_path(parts, b)
        if not path.is_file():
            continue
        found, _ = read_blocks(path)
        for name in ("model_identity", "build", "shard_count", "embed_dim"):
            if getattr(found, name) != getattr(header, name):
                raise ValueError(
                    f"--resume: {path} was made with another {name} "
                    f"({_describe_change(getattr(found, name), getattr(header, name))}); "
                    "resume with the settings of the first run, or remove the parts folder"
                )
        done.add(b)
    log.info("--resume: %d of %d blocks already built", len(done), len(header.blocks))
    return done


def _describe_change(old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        diff = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
        return ", ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in diff[:3])
    return f"{old!r} then, {new!r} now"


BlockInputs = tuple[DesignLibrary, NDArray[np.float64], NDArray[np.bool_]]


def _block_inputs(build: ProbeBuild, b: int, exclude: NDArray[np.int64] | None) -> BlockInputs:
    """Block ``b``'s designs, thicknesses and rasters: everything the encoder needs."""
    lib, thickness = draw_block(build, b, exclude)
    return lib, thickness, rasterize(lib)


def _prefetched(
    todo: Sequence[int], build: ProbeBuild, exclude: NDArray[np.int64] | None
) -> Iterator[tuple[int, BlockInputs]]:
    """Blocks in order, the next one drawn and rasterized in a thread while the caller encodes
    this one (numpy and torch both release the GIL in their kernels)."""
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[BlockInputs] = pool.submit(_block_inputs, build, todo[0], exclude)
        for i, b in enumerate(todo):
            ready = pending.result()
            if i + 1 < len(todo):
                pending = pool.submit(_block_inputs, build, todo[i + 1], exclude)
            yield b, ready


def shard_paths(output: Path, count: int) -> list[Path]:
    """Where a build split into ``count`` shards writes them: ``probes.h5`` ->
    ``probes-00000-of-00004.h5``, ... (one file when ``count`` is 1)."""
    if count == 1:
        return [output]
    return [
        output.with_name(f"{output.stem}-{i:05d}-of-{count:05d}{output.suffix}")
        for i in range(count)
    ]


def make_encoder(
    model_dir: Path, cfg: InferenceConfig, threads: int | None = None
) -> tuple[Encoder, str, int]:
    """The run's geometry encoder as a function of (images, params), its identity and width."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    model = prepare(load_model(model_dir), cfg)

    def encode(images: NDArray[np.bool_], params_um: NDArray[np.float64]) -> NDArray[np.float32]:
        return encode_geometry(model, images, params_um, cfg)

    return encode, model_identity(model_dir), model.cfg.embed_dim


def build_probes(
    output: Path,
    model_dir: Path,
    build: ProbeBuild,
    shard: Shard = Shard(),
    inference: InferenceConfig | None = None,
    exclude: NDArray[np.int64] | None = None,
    resume: bool = False,
    progress: bool = False,
    threads: int | None = None,
) -> Path:
    """One shard (or the whole build) from a model directory: what a cluster task runs."""
    encoder, identity, dim = make_encoder(model_dir, inference or InferenceConfig(), threads)
    return build_shard(
        output,
        build,
        shard,
        encoder,
        identity,
        dim,
        exclude=exclude,
        resume=resume,
        progress=progress,
    )


def build_on_cluster(
    address: str | None,
    output: Path,
    model_dir: Path,
    build: ProbeBuild,
    shards: int,
    inference: InferenceConfig | None = None,
    exclude: NDArray[np.int64] | None = None,
    resume: bool = False,
    threads_per_task: int = 1,
    local_workers: int = 2,
) -> list[Path]:
    """Every shard as one task on the dask.distributed scheduler at ``address`` (or, with
    None, a LocalCluster of ``local_workers`` processes). Workers must see ``model_dir`` and
    the output folder under the same paths (a shared file system on a real cluster)."""
    paths = shard_paths(output, shards)
    with DaskCluster(address, local_workers) as dask:
        futures = [
            dask.client.submit(
                build_probes,
                path.resolve(),
                Path(model_dir).resolve(),
                build,
                Shard(i, shards),
                inference=inference,
                exclude=exclude,
                resume=resume,
                threads=threads_per_task,
                pure=False,
                key=f"metascan-probes-{i}-of-{shards}-{time.time_ns()}",
            )
            for i, path in enumerate(paths)
        ]
        return [Path(f.result()) for f in futures]
