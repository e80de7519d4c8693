"""Data arrays copied from Kayenta's own Scala test suites (spinnaker/kayenta), one file per array."""

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

DIR = Path(__file__).parent / "fixtures" / "kayenta"


def load(name: str) -> NDArray[np.float64]:
    """`name`.txt holds the Scala array literal's numbers, comma separated, exactly as in the suite."""
    return np.array([float(t) for t in (DIR / f"{name}.txt").read_text().replace(",", " ").split()])
