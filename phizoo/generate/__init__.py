"""Data made here rather than loaded from elsewhere.

* :mod:`phizoo.generate.xtb_md` – ``phizoo data xtb-md``: GFN2-xTB Langevin MD of a molecule,
  written as an MD22-format (sGDML) ``.npz`` file (its public functions are there:
  ``xtb_md``, ``run_md``, ``molecule``, ``from_smiles``, ``from_file``, ``MOLECULES``, ...).

The converters that read such files into the LMDB store live in :mod:`phizoo.data`; this
package imports ``phizoo.data`` (errors, file checks), never the other way round, and never
``phizoo.models`` or ``phizoo.train``.
"""
