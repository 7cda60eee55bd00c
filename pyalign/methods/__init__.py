"""Decoding methods as step rules (DESIGN.md §7): the registry, the base classes and one module per method.

Registered, in the order ``--help`` lists them: ``base``, ``pref`` (plain.py), ``la`` (la.py), ``amulet``
(amulet.py), ``beam`` (beam.py), ``pad`` (pad.py), ``args`` (args.py), ``panda`` (panda.py). ``get_method(name)``
returns the class; ``cls.Params`` its typed parameters (defaults written once, there); engines call the rule.
"""
from .registry import (GuidedMethod, Method, MethodParams, NoParams, all_param_names, available_methods,
                       get_method, param, register_method)
from .sampling import SEED_BOUND, SamplingParams
from . import plain, la, amulet, beam, pad, args, panda  # noqa: E402,F401  (register the built-in methods)

__all__ = ["GuidedMethod", "Method", "MethodParams", "NoParams", "SEED_BOUND", "SamplingParams", "all_param_names",
           "available_methods", "get_method", "param", "register_method"]
