"""Finite-width deep pipeline: models, training, UFM and extended UFM, fixed-ETF classifier, memory.

Import from the submodules (no work at import time): :mod:`.models`, :mod:`.train`, :mod:`.ufm`,
:mod:`.extended_ufm`, :mod:`.fixed_etf`, :mod:`.memory`.
"""
