"""Adversarial examples: FGSM and PGD (captum.robust) on pixels, accuracy against epsilon.

    from convzoo.adversarial import Attack, robust_accuracy
    attack = Attack(model, "pgd", preprocessing, steps=10)      # pixels in [0, 1] in
    adversarial = attack.perturb(pixels, labels, eps=0.1)       # |x' - x| <= 0.1, x' in [0, 1]
    curve = robust_accuracy(attack, pixels, labels, [0, 0.1, 0.2])
"""

from convzoo.adversarial.attacks import (
    ATTACKS, DEFAULT_EPSILONS, Attack, RobustnessCurve, check_epsilons, robust_accuracy,
)

__all__ = ["ATTACKS", "DEFAULT_EPSILONS", "Attack", "RobustnessCurve", "check_epsilons", "robust_accuracy"]
