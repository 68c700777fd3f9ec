"""Perturbation methods by name: one class per module on one base (see base.Attack).

What each method takes is declared in settings.py, which imports without torch: `farm generate`
builds its options from it and a spec is checked by it before a model loads. The classes, and
make_attack that builds one by name, are in methods.py (they import torch).
"""

from farm.core.attacks.settings import DECLARED, METHOD_NAMES, NORMS, SETTINGS, Declaration, Setting, declaration

__all__ = ["DECLARED", "METHOD_NAMES", "NORMS", "SETTINGS", "Declaration", "Setting", "declaration"]
