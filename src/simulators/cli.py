"""``metascan sim``: the simulated bench from the command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from common.cluster import LOCAL_WORKERS, check_address
from common.outputs import check_outputs
from common.values import COUNT, FRACTION, SEED, Bounds
from layout.chip import CHIP_BOUNDS
from layout.generator import PERIOD_NM
from layout.material import ALLOWED as MATERIALS_ALLOWED
from layout.material import DEFAULT_MATERIAL, check_name
from simulators.microscope.config import PREVIEW_PADS
from simulators.passband import FILTER_WAVELENGTH_NM

THICKNESS_NM = CHIP_BOUNDS["thickness_nm"]

if TYPE_CHECKING:
    from layout.manifest import ChipManifest
    from simulators.virtual_chip import VirtualChip

app = typer.Typer(
    help="The simulated bench: device emulators and synthetic data.", no_args_is_help=True
)

# Unprivileged ports; BASE+2 must still be a port.
BASE_PORT = Bounds(1024, 65533, integer=True)
DURATION_S = Bounds(0.0, 10**7, unit="s", lo_open=True)
NOISE = Bounds(0.0, 0.5)  # std of transmission noise
REPLICAS = Bounds(1, 100, integer=True)
ORDERS = Bounds(0, 25, integer=True)
BIAS_NM = Bounds(-50.0, 50.0, unit="nm")
DILATION_SD_NM = Bounds(0.0, 50.0, unit="nm")
WORKERS = LOCAL_WORKERS  # LocalCluster processes for rcwa; 0 solves in this process
WORKERS_HELP = "rcwa only: solve on a LocalCluster of N worker processes (0: in this process)."
SCHEDULER_HELP = "rcwa only: solve on the running dask scheduler at this address (tcp://HOST:PORT)."
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]


@app.command("serve")
def serve_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="Bench config (TOML).")],
    base_port: Annotated[
        int | None,
        BASE_PORT.option(help="Serve 'sim' devices on BASE, BASE+1, BASE+2 instead of free ports."),
    ] = None,
    duration_s: Annotated[
        float | None,
        DURATION_S.option(help="Stop after this many seconds (default: until Ctrl-C)."),
    ] = None,
) -> None:
    """Serve the bench's emulated serial devices on 127.0.0.1 and print their VISA names."""
    from simulators.devices.serve import serve_bench  # keeps `metascan --help` fast

    with serve_bench(config, base_port) as served:
        for role, server in served.servers.items():
            typer.echo(f"{role:<10} {server.emulator.name:<20} {server.resource_name}")
        for role, address in served.skipped.items():
            typer.echo(f"{role:<10} not emulated: real device at {address}")
        typer.echo(
            "cameras    emulated by pylon in the client process (PYLON_CAMEMU), not served here"
        )
        typer.echo("serving; Ctrl-C stops" if duration_s is None else f"serving {duration_s} s")
        sys.stdout.flush()
        try:
            time.sleep(duration_s if duration_s is not None else 10**9)
        except KeyboardInterrupt:
            typer.echo("stopped")


@app.command("pairs")
def pairs_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Pairs file to write (.h5).")],
    count: Annotated[int, COUNT.option(help="Number of distinct designs.")] = 1000,
    seed: Annotated[int, SEED.option(help="Seed for designs, thicknesses, noise and splits.")] = 0,
    model: Annotated[str, typer.Option(help="Spectral model: analytic or rcwa.")] = "analytic",
    thickness_nm: Annotated[
        Any,
        THICKNESS_NM.list_option(
            help="Comma-separated film thicknesses; each design gets one at random."
        ),
    ] = "150,178,195",
    material: Annotated[
        str, typer.Option(help=f"Film material: {MATERIALS_ALLOWED}.")
    ] = DEFAULT_MATERIAL,
    periods_nm: Annotated[
        Any, PERIOD_NM.list_option(help="Comma-separated periods to draw from.")
    ] = "300,400,500,600",
    noise: Annotated[
        float, NOISE.option(help="Std of Gaussian measurement noise per replica (transmission).")
    ] = 0.0,
    replicas: Annotated[int, REPLICAS.option(help="Noisy copies of each design's spectra.")] = 1,
    orders: Annotated[
        Any, ORDERS.list_option(help="rcwa only: Fourier orders NX,NY (7,7: rms 0.02 converged).")
    ] = "7,7",
    cache: Annotated[
        Path | None, typer.Option(help="rcwa only: HDF5 cache of solved designs.")
    ] = None,
    workers: Annotated[int, WORKERS.option(help=WORKERS_HELP)] = 0,
    scheduler: Annotated[str | None, typer.Option(help=SCHEDULER_HELP)] = None,
    force: Force = False,
) -> None:
    """Write geometry-spectrum pairs straight from the generator and a spectral model."""
    from dataset.pairs_file import SCHEMA as PAIRS_SCHEMA  # keeps `metascan --help` fast
    from dataset.pairs_file import write_pairs
    from simulators.spectral import MODEL_NAMES
    from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs

    check_outputs(
        {"--output": output}, {"--cache": cache}, force, schemas={"--output": PAIRS_SCHEMA}
    )
    if model not in MODEL_NAMES:
        raise ValueError(f"--model {model!r} is not known; known: {', '.join(MODEL_NAMES)}")
    check_name(material, "--material")
    thicknesses: tuple[float, ...] = tuple(float(t) for t in thickness_nm)
    periods: tuple[int, ...] = periods_nm
    options: dict[str, object] = {}
    _rcwa_only(model, {"--workers": workers, "--scheduler": scheduler})
    if model == "rcwa":
        options = {
            "orders": _two_orders(orders),
            "cache_path": cache,
            "progress": True,
            **_solver_options(workers, scheduler),
        }
    config = SyntheticPairsConfig(
        count=count,
        seed=seed,
        model=model,
        thicknesses_nm=thicknesses,
        material=material,
        periods_nm=periods,
        noise=noise,
        replicas=replicas,
        model_options=options,
    )
    try:
        pairs = make_pairs(config, progress=True)
    except ImportError as exc:  # the optional rcwa backend: say how to install it, in one line
        raise ValueError(str(exc)) from None
    write_pairs(output, pairs)
    sizes = [int((pairs.split == code).sum()) for code in range(3)]
    typer.echo(
        f"wrote {len(pairs)} pairs ({count} designs x {replicas} replicas) to {output} "
        f"(train/val/test pairs: {sizes[0]}/{sizes[1]}/{sizes[2]})"
    )


@app.command("truth")
def truth_cmd(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Chip manifest (chip.h5).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Truth file to write (.h5).")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Simulated bench config (TOML): the truth of the chip its scans image (seed, "
            "spectral model and [simulation.microscope.fabrication] from the bench).",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Spectral model: analytic or rcwa. [default: analytic]")
    ] = None,
    seed: Annotated[
        int | None, SEED.option(help="Seed for pad dilations and defects. [default: 0]")
    ] = None,
    bandwidth: Annotated[
        str, typer.Option(help="Filter bandwidth mode the bands are averaged over.")
    ] = "narrow",
    bias_nm: Annotated[
        float | None, BIAS_NM.option(help="Per-chip mean size bias (nm). [default: 4.0]")
    ] = None,
    dilation_sd_nm: Annotated[
        float | None,
        DILATION_SD_NM.option(
            help="Per-pad random dilation spread, standard deviation (nm). [default: 1]"
        ),
    ] = None,
    defect_fraction: Annotated[
        float | None,
        FRACTION.option(
            help="Fraction of one replica's dataset pads made defective (half missing, "
            "half contaminated). [default: 0]"
        ),
    ] = None,
    material: Annotated[
        str | None,
        typer.Option(
            help="Film material the chip must be of; the chip is simulated in its manifest's "
            "material, and another is refused. [default: the manifest's]"
        ),
    ] = None,
    orders: Annotated[
        Any, ORDERS.list_option(help="rcwa only: Fourier orders NX,NY. [default: 7,7]")
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(help="rcwa only: HDF5 cache of solved designs.")
    ] = None,
    workers: Annotated[int, WORKERS.option(help=WORKERS_HELP)] = 0,
    scheduler: Annotated[str | None, typer.Option(help=SCHEDULER_HELP)] = None,
    force: Force = False,
) -> None:
    """Write the ground truth of a simulated chip: every pad's band-averaged transmission."""
    from dataset.truth_file import SCHEMA as TRUTH_SCHEMA  # keeps `metascan --help` fast
    from dataset.truth_file import Defect, write_truth
    from instruments.protocols import BandwidthMode
    from layout.manifest import read_manifest
    from simulators.spectral import MODEL_NAMES, get_model
    from simulators.virtual_chip import FabricationConfig, VirtualChip, make_truth

    modes = {m.value: m for m in BandwidthMode if m is not BandwidthMode.BLACK}
    if bandwidth.lower() not in modes:
        raise ValueError(
            f"--bandwidth {bandwidth!r} is not a passband; use one of: {', '.join(modes)}"
        )
    chip_options = {
        "--model": model,
        "--seed": seed,
        "--bias-nm": bias_nm,
        "--dilation-sd-nm": dilation_sd_nm,
        "--defect-fraction": defect_fraction,
    }
    if config is not None:
        given = [name for name, value in chip_options.items() if value is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} cannot be combined with --config: the bench config's "
                "[simulation] table sets the chip (seed, spectral_model, fabrication)"
            )
    model = "analytic" if model is None else model
    seed = 0 if seed is None else seed
    bias_nm = 4.0 if bias_nm is None else bias_nm
    dilation_sd_nm = FabricationConfig.dilation_sd_nm if dilation_sd_nm is None else dilation_sd_nm
    defect_fraction = 0.0 if defect_fraction is None else defect_fraction
    if model not in MODEL_NAMES:
        raise ValueError(f"--model {model!r} is not known; known: {', '.join(MODEL_NAMES)}")
    rcwa_options = _truth_rcwa_options(model, config, orders, cache, workers, scheduler)
    check_outputs(
        {"--output": output},
        {"--manifest": manifest, "--config": config, "--cache": cache},
        force,
        schemas={"--output": TRUTH_SCHEMA},
    )
    chip_manifest = read_manifest(manifest)
    if material is not None and material != chip_manifest.material:
        raise ValueError(
            f"--material {material!r} differs from the material of chip manifest {manifest} "
            f"({chip_manifest.material!r}); a chip is simulated in the film it was designed "
            "for: write the chip with metascan layout chip --material"
        )
    provenance: dict[str, object] = {
        "manifest": str(manifest),
        "manifest_sha256": chip_manifest.content_sha256(),
    }
    if config is not None:
        chip = _bench_chip(config, chip_manifest)
        provenance["bench_config"] = str(config)
    else:
        fabrication = FabricationConfig(
            seed=seed,
            mean_bias_nm=bias_nm,
            dilation_sd_nm=dilation_sd_nm,
            missing_fraction=defect_fraction / 2,
            contamination_fraction=defect_fraction / 2,
        )
        options: dict[str, object] = {"progress": True, **rcwa_options} if model == "rcwa" else {}
        try:
            spectral = get_model(model, **options)
        except ImportError as exc:  # the optional rcwa backend: say how to install it, in one line
            raise ValueError(str(exc)) from None
        chip = VirtualChip(chip_manifest, spectral, fabrication)
    mode = modes[bandwidth.lower()]
    try:
        truth = make_truth(chip, mode=mode, progress=True, provenance=provenance)
    finally:
        getattr(chip.model, "close", lambda: None)()  # an rcwa model's cluster, if it started one
    write_truth(output, truth)
    planted = int((truth.defect != Defect.NONE).sum())
    typer.echo(
        f"wrote truth for {len(truth)} pads x 2 polarizations x {truth.band_center_nm.size} "
        f"{mode.value} bands to {output} ({planted} defects planted"
        + (f" on replica {chip.defect_replica})" if planted else ")")
    )


def _rcwa_only(model: str, given: dict[str, object]) -> None:
    """Refuse, in one line, rcwa-only options given for another model."""
    named = [name for name, value in given.items() if value]
    if named and model != "rcwa":
        verb = "applies" if len(named) == 1 else "apply"
        raise ValueError(f"{', '.join(named)} {verb} to --model rcwa only, not --model {model}")


def _two_orders(orders: tuple[int, ...]) -> tuple[int, int]:
    if len(orders) != 2:
        raise ValueError(f"--orders {orders!r} must be two integers NX,NY, e.g. 3,3")
    return orders[0], orders[1]


def _solver_options(workers: int, scheduler: str | None) -> dict[str, object]:
    """Where rcwa solves: in this process, a LocalCluster of ``workers``, or ``scheduler``."""
    if scheduler is not None:
        check_address(scheduler, "--scheduler")
        if workers:
            raise ValueError(
                "--workers starts a local cluster and --scheduler uses a running one: give one"
            )
    return {"workers": workers, "scheduler": scheduler}


def _truth_rcwa_options(
    model: str,
    config: Path | None,
    orders: tuple[int, ...] | None,
    cache: Path | None,
    workers: int,
    scheduler: str | None,
) -> dict[str, object]:
    """``sim truth``'s rcwa options as model options: refused with --config (the bench config
    builds the chip's model) and for the analytic model."""
    given: dict[str, object] = {
        "--orders": orders,
        "--cache": cache,
        "--workers": workers,
        "--scheduler": scheduler,
    }
    named = [name for name, value in given.items() if value]
    if config is not None and named:
        raise ValueError(
            f"{', '.join(named)} cannot be combined with --config: the bench config's "
            "[simulation] table sets the chip's spectral model"
        )
    _rcwa_only(model, given)
    options = _solver_options(workers, scheduler)
    if orders is not None:
        options["orders"] = _two_orders(orders)
    if cache is not None:
        options["cache_path"] = cache
    return options


def _bench_chip(config: Path, manifest: ChipManifest) -> VirtualChip:
    """The chip a simulated bench config renders (simulators.microscope.bench_setup)."""
    from instruments.config import read_toml
    from simulators.devices.sim_config import simulation_config
    from simulators.microscope.bench_setup import bench_chip

    simulation = simulation_config(read_toml(config), config)
    if simulation is None:
        raise ValueError(f"{config} has no [simulation] table: it is not a simulated bench")
    try:
        return bench_chip(manifest, simulation.microscope, simulation.seed)
    except ImportError as exc:  # the optional rcwa backend: say how to install it, in one line
        raise ValueError(str(exc)) from None


@app.command("preview")
def preview_cmd(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Chip manifest (chip.h5).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for the PNGs (created if missing).")
    ],
    array: Annotated[
        str | None, typer.Option(help="Array name, e.g. A0R1 (default: the first).")
    ] = None,
    wavelength: Annotated[
        float, FILTER_WAVELENGTH_NM.option(help="Band of the raw frame preview.")
    ] = 550.0,
    model: Annotated[str, typer.Option(help="Spectral model: analytic or rcwa.")] = "analytic",
    seed: Annotated[int, SEED.option(help="Seed for the chip's fabrication and the noise.")] = 0,
    pads: Annotated[int, PREVIEW_PADS.option(help="Pads whose spectra are plotted.")] = 6,
    force: Force = False,
) -> None:
    """PNGs of what the virtual microscope sees of one array: a raw frame, false colour, spectra."""
    from layout.manifest import read_manifest  # keeps `metascan --help` fast
    from simulators.microscope.preview import preview_paths, write_previews
    from simulators.spectral import MODEL_NAMES, get_model

    if model not in MODEL_NAMES:
        raise ValueError(f"--model {model!r} is not known; known: {', '.join(MODEL_NAMES)}")
    check_outputs({"--output": output}, {"--manifest": manifest}, force, directories=True)
    chip_manifest = read_manifest(manifest)
    name = array or chip_manifest.arrays.name[0]
    chip_manifest.array_index(name)  # a bad name fails here, listing the arrays
    if output.is_dir():
        pngs = {f"preview {p}": p for p in preview_paths(output, name, wavelength).values()}
        check_outputs(pngs, {"--manifest": manifest}, force)
    options: dict[str, object] = {"progress": True} if model == "rcwa" else {}
    try:
        spectral = get_model(model, **options)
    except ImportError as exc:  # the optional rcwa backend: say how to install it, in one line
        raise ValueError(str(exc)) from None
    output.mkdir(exist_ok=True)
    files = write_previews(
        chip_manifest,
        output,
        array=name,
        wavelength_nm=wavelength,
        model=spectral,
        seed=seed,
        pads=pads,
        progress=True,
    )
    width, height = files.sensor_px
    typer.echo(
        f"wrote {files.frame}, {files.rgb} and {files.spectra} ({width}x{height} px sensor; "
        f"measured vs truth: max |diff| {files.max_error:.4f})"
    )
