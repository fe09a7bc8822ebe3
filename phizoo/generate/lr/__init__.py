"""The long-range benchmark data sets ("When does long range pay?"), one generator each.

* :func:`phizoo.generate.lr.point_charges.generate_point_charges` – 64 + 64 point charges
  (±1 e) in a periodic box, exact Ewald Coulomb (torch-pme) + Born–Mayer repulsion, frames of
  Langevin MD (``phizoo data generate point-charges``).
* :func:`phizoo.generate.lr.dimers.generate_dimers` – charged and polar dimers along
  dissociation curves, GFN2-xTB (``phizoo data generate dimers``).
* :func:`phizoo.generate.lr.clusters.generate_ag3` and
  :func:`phizoo.generate.lr.clusters.generate_carbon_chains` – Ag3⁺/Ag3⁻ (same geometries,
  opposite charges) and C10H2/C10H3⁺, GFN2-xTB (``phizoo data generate ag3`` /
  ``carbon-chains``).
* :func:`phizoo.generate.lr.nacl.generate_nacl` – Na9Cl8⁺/Na8Cl8 clusters (the same positions
  without one corner Na), GFN2-xTB (``phizoo data generate nacl``).

Every generator writes through :func:`phizoo.data.convert.convert` (the converters' atomic,
resumable LMDB writer): eV, Å, eV/Å, e; splits stored; the level of theory and every setting in
the metadata; reproducible by seed; an interrupted run continues when the same command is run
again. The shared machinery is :mod:`phizoo.generate.lr.common`.
"""
