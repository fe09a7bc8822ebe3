"""Data generators: labelled structures computed here (classical models, GFN2-xTB) and written
as phizoo LMDB databases or MD22-format files. ``phizoo.generate.lr``: the long-range benchmark
suite (``phizoo data generate ...``)."""
