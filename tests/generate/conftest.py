import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # single-threaded tblite is bitwise deterministic
