"""Why did the network say that? Attribution maps by captum for every zoo model, and
Adebayo et al.'s sanity check of them.

    from convzoo.attribution import Explainer, cascading_randomisation
    explainer = Explainer(model, "smoothgrad", preprocessing)   # pixels in [0, 1] in
    maps = explainer.attribute(pixels, target=None)             # predicted class by default
    sanity = cascading_randomisation(explainer, pixels)         # rho per re-initialised layer
"""

from convzoo.attribution.methods import METHODS, Explainer, attribution_magnitude, display_maps
from convzoo.attribution.sanity import SanityResult, cascading_randomisation, spearman
from convzoo.attribution.wrapping import GradientReadyModel, without_inplace
from convzoo.inspection.scores import ClassScores

__all__ = [
    "METHODS", "ClassScores", "Explainer", "GradientReadyModel", "SanityResult", "attribution_magnitude",
    "cascading_randomisation", "display_maps", "spearman", "without_inplace",
]
