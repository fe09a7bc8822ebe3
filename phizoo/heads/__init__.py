"""Long-range heads, side by side: the Φ-Module (``phi/``: continuous and paper formulations,
the screened-Poisson solver), the Coulomb head (``coulomb.py``) and the electrostatic sums it
uses (``electrostatics.py``: direct sum, Ewald/PME via torch-pme)."""
from .coulomb import CoulombHead, CoulombOutput, build_coulomb, resolve_coulomb_options  # noqa: F401
from .electrostatics import K_E, coulomb_energy, dipole_moment  # noqa: F401
