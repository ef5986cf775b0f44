"""``metascan instruments list``: what is plugged in (VISA resources and Basler cameras)."""

from __future__ import annotations

import gc
import warnings
from typing import Annotated

import pyvisa
import typer

app = typer.Typer(help="Find and check the bench's devices.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    visa_library: Annotated[str, typer.Option(help="PyVISA backend ('@py' = pyvisa-py).")] = "@py",
) -> None:
    """List VISA resources (serial ports, USB, GPIB) and the Basler cameras pylon can see."""
    from instruments.basler import list_cameras  # pypylon loads slowly; only when asked

    with warnings.catch_warnings():
        # pyvisa-py warns that it cannot scan for TCPIP/HiSLIP devices without optional packages
        # (socket bridges are never discovered anyway: they are named in the bench config), and
        # its VXI-11 broadcast leaves a socket to the garbage collector, collected here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", ResourceWarning)
        manager = pyvisa.ResourceManager(visa_library)
        try:
            resources = manager.list_resources()
        finally:
            manager.close()
            gc.collect()
    typer.echo(f"VISA resources ({visa_library}): {len(resources)}")
    for name in resources:
        typer.echo(f"  {name}")
    cameras = list_cameras()
    typer.echo(f"Basler cameras: {len(cameras)}")
    for camera in cameras:
        typer.echo(f"  {camera.serial:<14} {camera.model:<24} {camera.device_class}")
