"""The probe-database build (contract 7): deterministic and resumable bit for bit, shards (local
or on a dask cluster) equal to the single build, one model per database, constraints and
exclusions obeyed, unit latents, and designs drawn twice returned once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models_data import untrained_model
from numpy.typing import NDArray

from dataset.probes_file import (
    ProbeBlock,
    ProbeSet,
    ShardHeader,
    read_blocks,
    read_probes,
    write_shard,
)
from layout.checker import check_library
from layout.design import GEOMETRY_COLUMNS, DesignLibrary, Kind
from layout.generator import GeneratorConfig, generate
from layout.raster import rasterize
from layout.rules import DesignRules
from models.config import get_config
from models.inference import InferenceConfig, encode_geometry, prepare
from models.model_dir import load_model, model_identity, write_model_dir
from models.probes import (
    ProbeBuild,
    ProbeConstraints,
    Shard,
    build_on_cluster,
    build_probes,
    build_shard,
    draw_block,
    exclusion_key,
    make_encoder,
    parts_dir,
    shard_paths,
)

BUILD = ProbeBuild(count=500, seed=3, block_size=64)  # 8 blocks, the last one 52 long
LIBRARY_COLUMNS = ("design_id", "period_nm", "kind", *GEOMETRY_COLUMNS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "m"
    write_model_dir(folder, untrained_model(0), material="a-Si")
    return folder


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """``BUILD`` made in one go, as one file: what every other way of building must equal."""
    out = tmp_path_factory.mktemp("single") / "probes.h5"
    return build_probes(out, model_dir, BUILD, threads=1)


def assert_same(got: ProbeSet, want: ProbeSet) -> None:
    assert len(got) == len(want)
    for c in LIBRARY_COLUMNS:
        np.testing.assert_array_equal(getattr(got.library, c), getattr(want.library, c), c)
    np.testing.assert_array_equal(got.thickness_nm, want.thickness_nm)
    np.testing.assert_array_equal(got.latent, want.latent)
    assert got.latent.dtype == want.latent.dtype == np.float32
    assert got.duplicates_dropped == want.duplicates_dropped
    assert got.model_identity == want.model_identity
    assert got.build == want.build


def part_files(output: Path) -> list[str]:
    return sorted(p.name for p in parts_dir(output).iterdir())


# --- determinism and resume ------------------------------------------------------------------


def test_build_is_deterministic_and_resumes_bit_for_bit(
    tmp_path: Path, model_dir: Path, single: Path
) -> None:
    whole = read_probes([single])
    assert whole.duplicates_dropped <= BUILD.count // 50  # blocks are independent draws
    assert np.unique(whole.thickness_nm).size > 1
    again = build_probes(tmp_path / "again.h5", model_dir, BUILD, threads=1)
    assert again.read_bytes() == single.read_bytes()
    assert not parts_dir(again).exists()

    encoder, identity, dim = make_encoder(model_dir, InferenceConfig(), threads=1)
    out = tmp_path / "b.h5"
    build_shard(out, BUILD, Shard(), encoder, identity, dim, stop_after_blocks=3)
    assert not out.exists()
    assert part_files(out) == [f"block-{b:07d}.h5" for b in range(3)]
    for b in range(3):
        header, (block,) = read_blocks(parts_dir(out) / f"block-{b:07d}.h5")
        assert header.blocks == (b,) and block.index == b
        assert len(block.library) == BUILD.block_length(b)

    assert build_shard(out, BUILD, Shard(), encoder, identity, dim, resume=True) == out
    assert out.read_bytes() == single.read_bytes()
    assert not parts_dir(out).exists()
    header, blocks = read_blocks(out)
    assert header.blocks == tuple(range(BUILD.blocks))
    assert [len(b.library) for b in blocks] == [BUILD.block_length(b) for b in header.blocks]
    assert sum(len(b.library) for b in blocks) == BUILD.count


def test_resume_with_nothing_on_disk_is_a_fresh_build(
    tmp_path: Path, model_dir: Path, single: Path
) -> None:
    out = build_probes(tmp_path / "fresh.h5", model_dir, BUILD, resume=True, threads=1)
    assert out.read_bytes() == single.read_bytes()


def test_unfinished_build_needs_resume_and_the_same_build(tmp_path: Path, model_dir: Path) -> None:
    encoder, identity, dim = make_encoder(model_dir, InferenceConfig(), threads=1)
    out = tmp_path / "p.h5"
    build_shard(out, BUILD, Shard(), encoder, identity, dim, stop_after_blocks=2)
    before = {p.name: p.read_bytes() for p in parts_dir(out).iterdir()}
    with pytest.raises(FileExistsError, match="--resume"):
        build_shard(out, BUILD, Shard(), encoder, identity, dim)
    other_seed = ProbeBuild(count=BUILD.count, seed=BUILD.seed + 1, block_size=BUILD.block_size)
    with pytest.raises(ValueError, match=r"another build \(seed: 3 then, 4 now\)"):
        build_shard(out, other_seed, Shard(), encoder, identity, dim, resume=True)
    with pytest.raises(ValueError, match="another model_identity"):
        build_shard(out, BUILD, Shard(), encoder, "f" * 32, dim, resume=True)
    # The refusals touched nothing: the first run's blocks are still there, unchanged.
    assert not out.exists()
    assert {p.name: p.read_bytes() for p in parts_dir(out).iterdir()} == before


# --- shards --------------------------------------------------------------------------------------


def test_shards_read_as_the_single_build(tmp_path: Path, model_dir: Path, single: Path) -> None:
    paths = {}
    for i in (2, 0, 1):  # any order
        paths[i] = build_probes(
            tmp_path / f"s{i}.h5", model_dir, BUILD, Shard.parse(f"{i}/3"), threads=1
        )
    for i, p in paths.items():
        header, blocks = read_blocks(p)
        assert header.blocks == tuple(range(i, BUILD.blocks, 3))
        assert [b.index for b in blocks] == list(header.blocks)
        assert (header.shard_index, header.shard_count) == (i, 3)
    whole = read_probes([single])
    got = read_probes([paths[2], paths[0], paths[1]])
    assert got.shards_missing == () and whole.shards_missing == ()
    assert_same(got, whole)

    partial = read_probes([paths[2], paths[0]])
    assert partial.shards_missing == (1,)
    assert len(partial) < len(whole)
    with pytest.raises(ValueError, match="shard 0 given twice"):
        read_probes([paths[0], paths[1], paths[0]])
    with pytest.raises(ValueError, match="shard_count differs"):
        read_probes([paths[0], single])


def test_shard_parse() -> None:
    assert Shard.parse("1/4") == Shard(1, 4)
    assert Shard(1, 4).blocks(BUILD) == [1, 5]
    for bad in ("4/4", "-1/2", "1/0", "1", "a/b"):
        with pytest.raises(ValueError, match="--shard"):
            Shard.parse(bad)


def test_shard_paths() -> None:
    out = Path("/x/probes.h5")
    assert shard_paths(out, 1) == [out]
    assert shard_paths(out, 2) == [
        Path("/x/probes-00000-of-00002.h5"),
        Path("/x/probes-00001-of-00002.h5"),
    ]


def test_local_cluster_equals_single_build(tmp_path: Path, model_dir: Path, single: Path) -> None:
    paths = build_on_cluster(None, tmp_path / "c.h5", model_dir, BUILD, shards=2, local_workers=2)
    assert paths == [p.resolve() for p in shard_paths(tmp_path / "c.h5", 2)]
    assert all(p.is_file() and not parts_dir(p).exists() for p in paths)
    assert_same(read_probes(paths), read_probes([single]))


# --- model identity ------------------------------------------------------------------------------


def test_database_belongs_to_its_model(tmp_path: Path, model_dir: Path, single: Path) -> None:
    identity = model_identity(model_dir)
    assert len(identity) == 32
    db = read_probes([single], model_identity=identity)
    assert db.model_identity == identity
    with pytest.raises(ValueError, match="encoded by model"):
        read_probes([single], model_identity="0" * 32)

    # The same weights elsewhere (and another training log) are the same model ...
    copy = tmp_path / "copy"
    write_model_dir(copy, load_model(model_dir), train_config={"epochs": 7}, material="a-Si")
    assert model_identity(copy) == identity
    # ... other weights are not.
    other = tmp_path / "other"
    write_model_dir(other, untrained_model(1), material="a-Si")
    assert model_identity(other) != identity

    # Shards of one build encoded by two models are not one database.
    small = ProbeBuild(count=128, seed=9, block_size=64)
    s0 = build_probes(tmp_path / "s0.h5", model_dir, small, Shard(0, 2), threads=1)
    s1 = build_probes(tmp_path / "s1.h5", other, small, Shard(1, 2), threads=1)
    assert read_probes([s1]).model_identity == model_identity(other)
    with pytest.raises(ValueError, match="model_identity differs"):
        read_probes([s0, s1])


# --- constraints -----------------------------------------------------------------------------


def test_constraints_are_obeyed(tmp_path: Path, model_dir: Path) -> None:
    c = ProbeConstraints(
        periods_nm=(400,),
        thicknesses_nm=(178.0,),
        kinds=("rectangle",),
        max_primitives=2,
        min_gap_nm=80.0,
    )
    rules = c.rules()
    assert rules.min_gap_nm == 80.0 and rules.border_margin_nm == 40.0
    assert rules.min_feature_nm == DesignRules().min_feature_nm
    build = ProbeBuild(count=300, seed=1, block_size=128, constraints=c)
    db = read_probes([build_probes(tmp_path / "c.h5", model_dir, build, threads=1)])
    lib = db.library
    assert len(db) + db.duplicates_dropped == 300
    assert (lib.period_nm == 400).all()
    assert (db.thickness_nm == 178.0).all()
    assert np.isin(lib.kind, [Kind.RECTANGLE, Kind.EMPTY]).all()
    n_prims = lib.present.sum(axis=1)
    assert (n_prims >= 1).all() and (n_prims <= 2).all()
    assert check_library(lib, rules).passed.all()
    assert db.build["constraints"]["min_gap_nm"] == 80.0
    assert db.build["constraints"]["kinds"] == ["rectangle"]

    # The tightened check is not vacuous: default draws break it.
    default_lib, _ = draw_block(ProbeBuild(count=300, seed=1, block_size=128), 0)
    assert not check_library(default_lib, rules).passed.all()


def test_constraints_looser_than_the_fab_or_unknown_are_refused() -> None:
    with pytest.raises(ValueError, match="min_gap_nm"):
        ProbeConstraints(min_gap_nm=40.0)
    with pytest.raises(ValueError, match="min_feature_nm"):
        ProbeConstraints(min_feature_nm=20.0)
    with pytest.raises(ValueError, match="kinds"):
        ProbeConstraints(kinds=("rectangle", "hexagon"))
    with pytest.raises(ValueError, match="kinds"):
        ProbeConstraints(kinds=())
    with pytest.raises(ValueError, match="thickness_nm"):
        ProbeConstraints(thicknesses_nm=(1.0,))
    ProbeConstraints(min_gap_nm=50.0, min_feature_nm=50.0)  # the fab rule itself is fine


# --- exclusion -----------------------------------------------------------------------------------


def test_excluded_designs_never_appear_and_blocks_stay_full(
    tmp_path: Path, model_dir: Path
) -> None:
    plain = ProbeBuild(count=300, seed=5, block_size=64)
    lib0, thickness0 = draw_block(plain, 0)
    ids = lib0.design_id.copy()
    assert ids.size == plain.block_length(0) == 64
    build = ProbeBuild(
        count=300,
        seed=5,
        block_size=64,
        exclude_sha256=exclusion_key(ids),
        exclude_count=int(ids.size),
    )
    # The draw is still a pure function of (build, b, exclude).
    again, again_t = draw_block(build, 0, ids)
    drawn, drawn_t = draw_block(build, 0, ids)
    np.testing.assert_array_equal(again.design_id, drawn.design_id)
    np.testing.assert_array_equal(again_t, drawn_t)
    assert not np.isin(drawn.design_id, ids).any()
    np.testing.assert_array_equal(drawn_t, thickness0)

    out = build_probes(tmp_path / "x.h5", model_dir, build, exclude=ids, threads=1)
    header, blocks = read_blocks(out)
    assert header.build["exclude_sha256"] == exclusion_key(ids)
    assert [len(b.library) for b in blocks] == [build.block_length(b.index) for b in blocks]
    assert sum(len(b.library) for b in blocks) == 300
    for b in blocks:
        assert not np.isin(b.library.design_id, ids).any(), b.index
    db = read_probes([out])
    assert not np.isin(db.library.design_id, ids).any()
    # An empty exclusion is no exclusion.
    empty, _ = draw_block(plain, 1, np.zeros(0, dtype=np.int64))
    np.testing.assert_array_equal(empty.design_id, draw_block(plain, 1)[0].design_id)


def test_exclusion_key_is_of_the_set() -> None:
    ids = np.array([5, 3, 9, 3], dtype=np.int64)
    assert exclusion_key(ids) == exclusion_key(np.array([9, 5, 3], dtype=np.int64))
    assert exclusion_key(ids) != exclusion_key(np.array([9, 5], dtype=np.int64))


# --- latents ---------------------------------------------------------------------------------


def test_latents_are_unit_float32_and_bf16_agrees_with_fp32(model_dir: Path, single: Path) -> None:
    db = read_probes([single])
    assert db.latent.dtype == np.float32
    assert db.latent.shape == (len(db), get_config("metascan-small").embed_dim)
    np.testing.assert_allclose(np.linalg.norm(db.latent, axis=1), 1.0, atol=1e-5, rtol=0)

    _, (block0, *_) = read_blocks(single)
    images = rasterize(block0.library)
    params = np.stack([block0.library.period_nm, block0.thickness_nm], axis=1) / 1000.0
    model = load_model(model_dir)
    bf16 = encode_geometry(prepare(model, InferenceConfig()), images, params, InferenceConfig())
    # The build encoded (period, thickness) in µm with the default (bf16) settings.
    np.testing.assert_allclose(bf16, block0.latent, atol=1e-5, rtol=0)
    fp32_cfg = InferenceConfig(precision="fp32", batch_size=17)  # several batches
    fp32 = encode_geometry(load_model(model_dir), images, params, fp32_cfg)
    assert fp32.dtype == bf16.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5, rtol=0)
    cosine = (fp32.astype(np.float64) * bf16).sum(axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    assert not np.array_equal(fp32, bf16)  # bf16 really ran in bf16


# --- duplicates across blocks ------------------------------------------------------------------


def test_design_drawn_in_two_blocks_is_read_once_from_the_earlier_block(tmp_path: Path) -> None:
    a = generate(5, 11)
    b = generate(5, 12)
    assert np.unique(np.concatenate([a.design_id, b.design_id])).size == 10
    dup = int(a.design_id[3])
    lib1 = DesignLibrary.concatenate(
        [b.take(slice(0, 2)), a.take(np.array([3])), b.take(slice(2, 5))]
    )
    assert lib1.design_id[2] == dup
    dim = 8
    rng = np.random.default_rng(0)

    def latents(n: int) -> NDArray[np.float32]:
        z = rng.standard_normal((n, dim)).astype(np.float32)
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    block0 = ProbeBlock(0, a, np.full(5, 150.0), latents(5))
    block1 = ProbeBlock(1, lib1, np.full(6, 195.0), latents(6))
    header = ShardHeader("ab" * 16, dim, {"count": 11}, 0, 1, (0, 1))

    in_order = tmp_path / "in_order.h5"
    write_shard(in_order, header, [block0, block1])
    reversed_rows = tmp_path / "reversed.h5"  # rows of block 1 first: block order still wins
    write_shard(reversed_rows, header, [block1, block0])
    s0, s1 = tmp_path / "s0.h5", tmp_path / "s1.h5"  # the two blocks in two shards
    write_shard(s0, ShardHeader("ab" * 16, dim, {"count": 11}, 0, 2, (0,)), [block0])
    write_shard(s1, ShardHeader("ab" * 16, dim, {"count": 11}, 1, 2, (1,)), [block1])

    want_ids = np.concatenate([a.design_id, np.delete(lib1.design_id, 2)])
    want_latent = np.concatenate([block0.latent, np.delete(block1.latent, 2, axis=0)])
    want_thickness = np.array([150.0] * 5 + [195.0] * 5)
    for paths in ([in_order], [reversed_rows], [s1, s0]):
        db = read_probes(paths)
        assert db.duplicates_dropped == 1, paths
        assert int((db.library.design_id == dup).sum()) == 1
        np.testing.assert_array_equal(db.library.design_id, want_ids)
        np.testing.assert_array_equal(db.latent, want_latent)
        np.testing.assert_array_equal(db.thickness_nm, want_thickness)
        row = int(np.flatnonzero(db.library.design_id == dup)[0])
        assert row == 3 and db.thickness_nm[row] == 150.0
        np.testing.assert_array_equal(db.latent[row], block0.latent[3])

    # read_blocks returns what was written, duplicates included.
    _, (r0, r1) = read_blocks(in_order)
    assert len(r0.library) == 5 and len(r1.library) == 6
    np.testing.assert_array_equal(r1.library.design_id, lib1.design_id)


def test_blocks_of_different_slot_counts_share_a_shard(tmp_path: Path) -> None:
    wide = generate(4, 21)  # up to 4 primitives
    narrow = generate(4, 22, GeneratorConfig(max_primitives=1))
    assert narrow.slots < wide.slots
    z = np.eye(4, 8, dtype=np.float32)
    header = ShardHeader("cd" * 16, 8, {"count": 8}, 0, 1, (0, 1))
    path = tmp_path / "mixed.h5"
    write_shard(
        path,
        header,
        [ProbeBlock(0, narrow, np.full(4, 150.0), z), ProbeBlock(1, wide, np.full(4, 178.0), z)],
    )
    db = read_probes([path])
    assert db.library.slots == wide.slots
    np.testing.assert_array_equal(
        db.library.design_id, np.concatenate([narrow.design_id, wide.design_id])
    )
    # Padding added empty slots only: the designs read back are the designs written.
    assert list(db.library.take(slice(0, 4)).designs()) == list(narrow.designs())
    assert check_library(db.library).passed.all()
