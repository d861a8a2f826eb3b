"""The ``network`` writer: the description itself, as a ``.snn`` file (see snnexport.network)."""

from __future__ import annotations

from ..network import Network
from .base import NATIVE, FEATURES, Rendered, WriteOptions, Writer


class NetworkWriter(Writer):
    name = "network"
    summary = "the simulator-independent network description (.snn), for `snnexport info/simulate`"
    suffix = ".snn"
    binary = True
    capabilities = {f: (NATIVE, "stored as described") for f in FEATURES}

    def render(self, net: Network, options: WriteOptions) -> Rendered:
        self.check(net)  # a file that would be refused on load is never written
        return Rendered(net.write_to)  # streamed: a big model's weights are never copied into memory
