"""Closed forms the package is checked against (simplex ETF, UFM minimisers, seed laws, ...).

One module per family (``etf``, ``ufm``, ...); import them as ``meanfield.theory.etf`` etc.
"""
