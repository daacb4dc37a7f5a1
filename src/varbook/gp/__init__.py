"""Gaussian processes :cite:`lee2022scale`: NNGP kernels (:mod:`.kernels`) and exact GP and Student-t process regression (:mod:`.exact`)."""
