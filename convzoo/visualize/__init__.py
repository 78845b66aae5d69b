"""What a trained network's units respond to: ``convzoo visualize``'s library.

Each kind is one module with one job, returning tensors so a notebook can use it as
the CLI does (the CLI, ``convzoo/commands/visualize.py``, only adds files and pictures):

- ``filters``:  a conv layer's kernels as images (``filter_images``);
- ``features``: every feature map of chosen layers for some images (``feature_maps``);
- ``patches``:  the dataset patches where each channel fires most, cropped to the unit's
  receptive field (``top_activating_patches``);
- ``maximize``: images that maximise a channel or a class by gradient ascent, with
  Lucid's regularised recipe (``fourier``, ``transforms``) or the lecture's bare one;
- ``dream``:    Deep Dream at several scales (``deep_dream``);
- ``layers``:   what they share: layer names resolved as ``probe`` does, activations
  captured with the probe's in-place-safe taps, the model frozen and restored.

Layers are found with ``convzoo.probing.layers`` (the family's exits by default) and
captured with ``convzoo.probing.features.FeatureTaps``; receptive-field boxes come from
``convzoo.receptive_field``.
"""

from convzoo.visualize.dream import DreamResult, deep_dream
from convzoo.visualize.features import feature_maps
from convzoo.visualize.filters import conv_layer_weight, filter_images
from convzoo.visualize.layers import frozen, layer_output, parse_channels, resolve_layers
from convzoo.visualize.maximize import MaximizeResult, maximize
from convzoo.visualize.patches import TopPatches, top_activating_patches

__all__ = [
    "DreamResult", "MaximizeResult", "TopPatches", "conv_layer_weight", "deep_dream", "feature_maps", "filter_images",
    "frozen", "layer_output", "maximize", "parse_channels", "resolve_layers", "top_activating_patches",
]
