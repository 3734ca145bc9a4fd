"""Envelopes: labelled, time-varying rate multipliers m(t) ≥ 0 on a mix's arrival processes
(:mod:`~servetrace.synth.mix`).

Kinds (times in seconds from the sample's zero, ``height`` a multiplier of the rate):

* ``step``: m = 1 before ``at_s``, ``height`` from it on;
* ``ramp``: m = ``start`` before ``at_s``, linear to ``height`` over ``duration_s``, then
  ``height``;
* ``spike`` (a burst): m = ``height`` in [``at_s``, ``at_s + duration_s``), 1 elsewhere;
* ``profile``: the windowed request rate of another trace, normalized to mean 1
  (:func:`profile_from_times`): m = ``values[⌊(t − at_s)/window_s⌋ mod n]``, repeating past
  its end.

Several envelopes on one component multiply. They act on a point process of intensity
λ(t) as thinning and superposition do (Lewis & Shedler 1979; Daley & Vere-Jones 2003
§11.3): with M ≥ max m the product of the envelopes' maxima (:func:`bound`), the process
is sampled as it is and each point kept with probability min(m(t), 1), and where M > 1 an
independent copy at rate (M − 1)·λ is added, each of its points kept with probability
(max(m(t), 1) − 1)/(M − 1). The intensity is λ(t)·m(t); where m = 1 the original process is
left exactly as it is (its burstiness untouched), where m < 1 it is p-thinned. Sessions
are kept or dropped whole, by the time of their first request: an envelope multiplies the
rate of session starts, and a session that starts in a spike runs on after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("step", "ramp", "spike", "profile")
"""Values of :attr:`Envelope.kind`."""

_KEYS = {"step": ("at", "height", "label", "to"),
         "ramp": ("at", "duration", "height", "from", "label", "to"),
         "spike": ("at", "duration", "height", "label", "to"),
         "profile": ("window", "at", "label", "to")}
"""Keys of :func:`parse` per kind (``to``: the labels of the components it applies to)."""

_GAUSS = np.polynomial.legendre.leggauss(8)
"""Gauss–Legendre nodes and weights: exact for polynomials of degree ≤ 15, so for products
of up to 15 envelopes that are linear between their breakpoints."""


@dataclass(frozen=True)
class Envelope:
    """A labelled rate multiplier (module docstring). ``components``: labels of the mix's
    components it applies to (empty: every component with arrivals). ``values``: the
    profile's multipliers per window of ``window_s`` (mean 1), ``source`` the trace they
    were taken from."""

    kind: str
    label: str = ""
    at_s: float = 0.0
    duration_s: float = 0.0
    height: float = 1.0
    start: float = 1.0
    window_s: float = 0.0
    values: tuple[float, ...] = ()
    source: str = ""
    components: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        name = f"envelope {self.label or self.kind}"
        for f in ("at_s", "duration_s", "height", "start", "window_s"):  # 600 → 600.0
            v = getattr(self, f)
            if isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, f, float(v))
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        object.__setattr__(self, "components", tuple(self.components))
        if self.kind not in KINDS:
            raise ValueError(f"{name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for f in ("at_s", "duration_s", "height", "start", "window_s"):
            v = getattr(self, f)
            if not (isinstance(v, int | float) and math.isfinite(v)):
                raise ValueError(f"{name}: {f} must be a finite number, got {v!r}")
        if self.height < 0 or self.start < 0:
            raise ValueError(f"{name}: a rate multiplier cannot be negative")
        if self.kind in ("ramp", "spike") and not self.duration_s > 0:
            raise ValueError(f"{name}: duration_s must be positive, got {self.duration_s!r}")
        if self.kind == "profile":
            v = np.asarray(self.values, dtype=np.float64)
            if not self.window_s > 0 or len(v) == 0:
                raise ValueError(f"{name}: a profile needs window_s > 0 and its values")
            if not (np.isfinite(v).all() and (v >= 0).all()):
                raise ValueError(f"{name}: profile values must be non-negative numbers")

    def multiplier(self, t: np.ndarray) -> np.ndarray:
        """m(t) at times ``t`` (s)."""
        t = np.asarray(t, dtype=np.float64)
        if self.kind == "step":
            return np.where(t >= self.at_s, self.height, 1.0)
        if self.kind == "spike":
            inside = (t >= self.at_s) & (t < self.at_s + self.duration_s)
            return np.where(inside, self.height, 1.0)
        if self.kind == "ramp":
            x = np.clip((t - self.at_s) / self.duration_s, 0.0, 1.0)
            return self.start + (self.height - self.start) * x
        v = np.asarray(self.values, dtype=np.float64)
        i = np.floor((t - self.at_s) / self.window_s).astype(np.int64) % len(v)
        return v[i]

    @property
    def maximum(self) -> float:
        """max over t of m(t)."""
        if self.kind == "profile":
            return float(max(self.values))
        if self.kind == "ramp":
            return max(self.start, self.height)
        return max(1.0, self.height)

    def breakpoints(self, duration_s: float) -> np.ndarray:
        """Times in (0, duration_s) between which m is linear (constant, or a ramp's line)."""
        if self.kind in ("step",):
            b = np.array([self.at_s])
        elif self.kind in ("ramp", "spike"):
            b = np.array([self.at_s, self.at_s + self.duration_s])
        else:
            k0 = math.ceil(-self.at_s / self.window_s)
            k1 = math.floor((duration_s - self.at_s) / self.window_s)
            b = self.at_s + self.window_s * np.arange(k0, k1 + 1, dtype=np.float64)
        return b[(b > 0) & (b < duration_s)]


def applies(env: Envelope, label: str) -> bool:
    """Whether ``env`` acts on the component labelled ``label``."""
    return not env.components or label in env.components


def multiplier(envelopes: tuple[Envelope, ...] | list[Envelope], t: np.ndarray) -> np.ndarray:
    """The product of the envelopes' multipliers at ``t`` (1 where there are none)."""
    m = np.ones(np.shape(t))
    for e in envelopes:  # a handful of envelopes, each vectorized over t
        m *= e.multiplier(t)
    return m


def bound(envelopes: tuple[Envelope, ...] | list[Envelope]) -> float:
    """M = Π max m_j ≥ max_t Π m_j(t): the rate the thinning samples at (module docstring)."""
    return float(np.prod([e.maximum for e in envelopes])) if envelopes else 1.0


def integral(envelopes: tuple[Envelope, ...] | list[Envelope], duration_s: float) -> float:
    """∫₀^D Π m_j(t) dt, exactly: between the envelopes' breakpoints each factor is linear,
    so the product is a polynomial that 8-point Gauss–Legendre integrates exactly."""
    if not envelopes:
        return float(duration_s)
    b = np.unique(np.concatenate([[0.0, float(duration_s)],
                                  *(e.breakpoints(duration_s) for e in envelopes)]))
    lo, hi = b[:-1], b[1:]
    x, w = _GAUSS
    t = (lo[:, None] + hi[:, None]) / 2 + (hi - lo)[:, None] / 2 * x[None, :]
    return float(((hi - lo) / 2 * (multiplier(envelopes, t) @ w)).sum())


def excess_end(envelopes: tuple[Envelope, ...] | list[Envelope], duration_s: float) -> float:
    """A time past which Π m_j(t) ≤ 1 on [0, D): the product exceeds 1 only where a
    factor does, and a factor does until its own end (a spike's, a ramp's from a start
    above 1; a step or ramp up, or a profile with a window above 1: the end, D)."""
    end = 0.0
    for e in envelopes:
        if e.maximum <= 1.0:
            continue
        if e.kind == "spike":
            end = max(end, e.at_s + e.duration_s)
        elif e.kind == "ramp" and e.height <= 1.0:  # a ramp down from above 1
            end = max(end, e.at_s + e.duration_s)
        else:
            end = duration_s
    return float(min(max(end, 0.0), duration_s)) or float(duration_s)


def keep_probabilities(envelopes: tuple[Envelope, ...] | list[Envelope], t: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, float]:
    """(keep probability of the process's own points, of the added copy's points, M) at
    times ``t`` (module docstring); the copy is sampled at rate (M − 1)·λ where M > 1."""
    m = multiplier(envelopes, t)
    big = bound(envelopes)
    extra = (np.maximum(m, 1.0) - 1.0) / (big - 1.0) if big > 1.0 else np.zeros_like(m)
    return np.minimum(m, 1.0), extra, big


def profile_from_times(times: np.ndarray, window_s: float, *, label: str = "profile",
                       source: str = "", at_s: float = 0.0,
                       components: tuple[str, ...] = ()) -> Envelope:
    """A ``profile`` envelope from a trace's arrival times: requests per window of
    ``window_s`` from its first arrival (whole windows only), divided by their mean."""
    t = np.asarray(times, dtype=np.float64)
    t = t[np.isfinite(t)]
    if not (isinstance(window_s, int | float) and math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"profile {source}: window must be a positive number of seconds, "
                         f"got {window_s!r}")
    if len(t) < 2:
        raise ValueError(f"profile {source}: the trace has fewer than 2 arrival times")
    t = t - t.min()
    n_w = int(t.max() // window_s)
    if n_w < 2:
        raise ValueError(f"profile {source}: the trace spans {t.max():g} s, fewer than two "
                         f"windows of {window_s:g} s")
    counts = np.bincount((t[t < n_w * window_s] // window_s).astype(np.int64), minlength=n_w)
    v = counts / counts.mean()
    return Envelope("profile", label, float(at_s), 0.0, 1.0, 1.0, float(window_s),
                    tuple(float(x) for x in v), source, tuple(components))


def parse(kind: str, spec: str) -> dict[str, object]:
    """``key=value,...`` of an envelope flag (``--spike at=600,duration=300,height=3``) as
    keyword arguments of :class:`Envelope` (``to=a+b`` names the components, ``from`` a
    ramp's starting multiplier); errors name the flag and the key."""
    if kind not in _KEYS:
        raise ValueError(f"envelope kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out: dict[str, object] = {"kind": kind}
    names = {"at": "at_s", "duration": "duration_s", "height": "height", "from": "start",
             "window": "window_s", "label": "label", "to": "components"}
    for item in (p for p in spec.split(",") if p.strip()):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in _KEYS[kind]:
            raise ValueError(f"--{kind} {spec!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(_KEYS[kind])}; got {item!r}")
        if key == "label":
            out["label"] = value.strip()
        elif key == "to":
            out["components"] = tuple(v for v in value.strip().split("+") if v)
        else:
            try:
                out[names[key]] = float(value)
            except ValueError:
                raise ValueError(f"--{kind} {spec!r}: {key}={value!r} is not a number") from None
    need = {"step": ("at", "height"), "ramp": ("at", "duration", "height"),
            "spike": ("at", "duration", "height"), "profile": ()}[kind]
    missing = [k for k in need if names[k] not in out]
    if missing:
        raise ValueError(f"--{kind} {spec!r}: missing {', '.join(missing)}")
    out.setdefault("label", f"{kind}")
    return out
