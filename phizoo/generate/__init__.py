"""Data made here rather than loaded from elsewhere.

* :mod:`phizoo.generate.xtb_md` – ``phizoo data xtb-md``: GFN2-xTB Langevin MD of a molecule,
  written as an MD22-format (sGDML) ``.npz`` file (its public functions are there:
  ``xtb_md``, ``run_md``, ``molecule``, ``from_smiles``, ``from_file``, ``MOLECULES``, ...).
* :mod:`phizoo.generate.lr` – ``phizoo data generate ...``: the long-range benchmark suite
  (random point charges with exact Ewald, charged and polar dimers, Ag3±, C10H2/C10H3+; the
  last three GFN2-xTB), written as phizoo LMDB databases.

The converters that read such files into the LMDB store live in :mod:`phizoo.data`; this
package imports ``phizoo.data`` (errors, file checks, the converter), never the other way
round, and never ``phizoo.models`` or ``phizoo.train``.
"""
