"""Immutable numeric vectors held as packed machine values: `Floats` (float64) and `IntPairs` (int64 pairs).

The e-processes keep a few hundred floats per metric (penalties over the θ grid, the noise log-likelihoods)
and one (canary, baseline) request pair per interval. As tuples each float costs a pointer and a float
object (32 bytes, not 8) and each pair 120 bytes (not 16): a daemon with 1,000 rollouts of five metrics
held ~80 MB of them, and the pairs grow with every tick. The values are the same bits either way:
`np.asarray` gives the same array and iterating gives the same Python numbers, so evidence stays
bit-identical and its JSON unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, overload

import numpy as np
from numpy.typing import NDArray


class _Packed:
    __slots__ = ("_data",)
    _dtype: ClassVar[type[np.generic]]
    _width: ClassVar[int]  # values per item

    def __init__(self, values: Iterable[Any] | NDArray[Any] = ()) -> None:
        if isinstance(values, type(self)):
            self._data: bytes = values._data
            return
        array = values if isinstance(values, np.ndarray) else np.array(list(values), dtype=self._dtype)
        if array.size and array.size % self._width:
            raise ValueError(f"{type(self).__name__}: {array.size} values are not items of {self._width}")
        self._data = np.ascontiguousarray(array, dtype=self._dtype).tobytes()

    @classmethod
    def _of_bytes(cls, data: bytes) -> Any:
        new = cls.__new__(cls)
        new._data = data
        return new

    def array(self) -> NDArray[Any]:
        """The values as a read-only array over this vector's bytes (no copy): [n] or [n, width]."""
        flat = np.frombuffer(self._data, dtype=self._dtype)
        return flat if self._width == 1 else flat.reshape(-1, self._width)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        array = self.array()
        if dtype is not None and np.dtype(dtype) != array.dtype:
            return array.astype(dtype)
        return array.copy() if copy else array

    def __len__(self) -> int:
        return len(self._data) // (8 * self._width)

    def tolist(self) -> list[Any]:
        return self.array().tolist()  # type: ignore[no-any-return]

    def _items(self) -> list[Any]:
        return self.tolist()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, type(self)):
            # Same bytes is the common case; otherwise compare as the numbers do (0.0 == -0.0, NaN != NaN).
            return self._data == other._data or self._items() == other._items()
        if isinstance(other, tuple | list):
            return self._items() == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items()!r})"

    def __reduce__(self) -> tuple[type, tuple[list[Any]]]:
        return (type(self), (self._items(),))


class Floats(_Packed, Sequence[float]):
    """float64 values: equal to another `Floats` or a tuple/list of the same floats; hashable like that tuple."""

    __slots__ = ()
    _dtype = np.float64
    _width = 1

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[float, ...]: ...

    def __getitem__(self, index: int | slice) -> float | tuple[float, ...]:
        if isinstance(index, slice):  # a tuple, as a tuple's slice is (and `+` joins them)
            return tuple(self.array()[index].tolist())
        return float(self.array()[index])

    def __iter__(self) -> Iterator[float]:
        return iter(self.tolist())


class IntPairs(_Packed, Sequence[tuple[int, int]]):
    """int64 pairs: equal to a tuple/list of the same 2-tuples; `appended` makes the one-longer vector."""

    __slots__ = ()
    _dtype = np.int64
    _width = 2

    def _items(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in self.tolist()]

    @overload
    def __getitem__(self, index: int) -> tuple[int, int]: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[tuple[int, int], ...]: ...

    def __getitem__(self, index: int | slice) -> tuple[int, int] | tuple[tuple[int, int], ...]:
        if isinstance(index, slice):
            return tuple((a, b) for a, b in self.array()[index].tolist())
        a, b = self.array()[index].tolist()
        return (a, b)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._items())

    def appended(self, a: int, b: int) -> IntPairs:
        return IntPairs._of_bytes(self._data + np.array([a, b], dtype=np.int64).tobytes())  # type: ignore[no-any-return]

