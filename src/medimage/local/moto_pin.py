"""The moto release the local stack's patches were written for (``moto_patches``, ``moto_map``): both
patch moto internals, so both refuse any other."""

from __future__ import annotations

import moto

SUPPORTED_MOTO = "5.2."


def check_moto_version() -> None:
    """The patched names are moto internals: refuse to run against a moto this was not written for."""
    if not moto.__version__.startswith(SUPPORTED_MOTO):
        raise RuntimeError(
            f"medimage.local's moto patches were written for moto {SUPPORTED_MOTO}x, "
            f"found {moto.__version__}; re-check the patched internals before moving the pin"
        )
