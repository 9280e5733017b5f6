"""The offline demo: a synthetic vehicle dataset (:mod:`fnc.demo.synthetic`) and the run that
trains and scores FNC on it (:mod:`fnc.demo.run`, behind ``fnc-reid demo``).

>>> from fnc.demo import run_demo
>>> result = run_demo("/tmp/fnc-demo", quick=True, progress=False)  # doctest: +SKIP
"""

from fnc.demo.run import DEMO_SIZES, DemoSize, run_demo
from fnc.demo.synthetic import make_synthetic_dataset

__all__ = ["DEMO_SIZES", "DemoSize", "make_synthetic_dataset", "run_demo"]
