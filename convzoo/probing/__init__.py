"""Layer-wise linear probing: how much each layer of a frozen network knows.

``probe(resolve_backbone(checkpoint="runs/x/best.pt", ...), ProbeSettings(compare_random=True))``
is what ``convzoo probe`` runs. The pieces, one job each:

- ``layers``:   which modules can be tapped (``trace_layers``), ``--layers`` resolution;
- ``features``: pooling each exit to about ``--features`` numbers, forward-hook capture;
- ``heads``:    the linear heads, trained together from one backbone pass per batch;
- ``run``:      checkpoint / random network in, results object out;
- ``report``:   probe.json, probe.csv, probe.png, TensorBoard, terminal tables.
"""

from convzoo.probing.run import Backbone, ProbeSettings, list_layers, probe, resolve_backbone

__all__ = ["Backbone", "ProbeSettings", "list_layers", "probe", "resolve_backbone"]
