"""Workload mixes: fitted models, traces and offline batches combined with labels, shares,
classes, model names and envelopes, as plain versioned JSON; :meth:`Mix.sample` gives one
canonical ``requests`` table.

Serving systems are evaluated on workloads with one more dimension than a fitted trace
gives: latency-sensitive online traffic co-located with throughput-oriented offline jobs
(HyGen), priority and SLO classes (Llumnix, Andes), many fine-tuned models or LoRA adapters
of skewed popularity (multi-LoRA serving, BlockLLM), load spikes and ramps (λScale). A
:class:`Mix` is a list of components (:class:`Component`) and envelopes
(:class:`~servetrace.synth.mix_envelopes.Envelope`):

* a component's ``kind``: ``model`` (a fitted :class:`~servetrace.synth.model.WorkloadModel`
  JSON, sampled), ``replay`` (a requests trace, its own requests in its own times, repeated
  past its end; at a rate factor f ≤ 1 p-thinned, above 1 superposed with randomly shifted
  copies of itself), ``resample`` (a trace fitted in memory, then sampled) or ``batch``
  (``count`` offline requests, lengths from a model or a trace's rows, all available at
  ``at_s``: no arrival process; a trace's batch without a count or share is all its rows);
* its ``share`` of the mix's requests or tokens (``Mix.by``): the rate factors are solved at
  sampling time so that the expected requests (or tokens) of each component are its share
  (:func:`solve`); without shares each component keeps its own rate (a batch its count);
  ``Mix.rate`` sets the total (requests or tokens per second over the sample), otherwise the
  first component with arrivals keeps its own rate and the others are sized to it;
* its class columns: ``request_class`` (``online``, ``offline`` or a label of the user's),
  ``offline`` (sent from a backlog once ``arrival_s`` has passed), ``priority`` (0 most
  urgent), ``slo_ttft_s`` and ``slo_tpot_s`` (seconds); and ``models``, a
  :class:`~servetrace.synth.mix_popularity.Popularity` law of the ``model`` names its
  requests send (otherwise they keep their source's names);
* envelopes act on the components named in them (all with arrivals by default) by
  thinning and superposition (:mod:`~servetrace.synth.mix_envelopes`).

Sources are file paths (model ``.json``, requests ``.parquet``; relative paths are relative
to the mix file's folder, ``base`` in :meth:`Mix.sample`) or trace ids of a store. The
sample's ``trace`` is ``synth/mix/<name>``, request ids number the rows, sessions and
prefix block ids are renumbered so that no two parts share one by accident, and
:meth:`~servetrace.synth.mix_sample.MixSample.metadata` names the mix (components with their
solved factors, expected and sampled counts, envelopes, seed) for the Parquet file. Sampling
lives in :mod:`~servetrace.synth.mix_sample`; the command line is ``servetrace mix``
(:mod:`servetrace.cli_mix`) and ``servetrace generate MIX.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from servetrace.synth.mix_envelopes import Envelope, applies
from servetrace.synth.mix_popularity import Popularity

VERSION = "1"
"""Version of the mix format written; :meth:`Mix.from_json` reads :data:`READABLE_VERSIONS`."""
READABLE_VERSIONS = ("1",)

KINDS = ("model", "replay", "resample", "batch")
"""Values of :attr:`Component.kind`."""

BY = ("requests", "tokens")
"""Values of :attr:`Mix.by`: what the shares divide."""

METADATA_KEY = "servetrace:mix"
"""Parquet key-value metadata key of a mix sample's description (JSON)."""


def _number(value: object, name: str, *, positive: bool = False, minimum: float | None = None
            ) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {value!r}")


@dataclass(frozen=True)
class Component:
    """One part of a mix (module docstring). ``sha256``: the source file's digest when the
    mix was made (provenance; empty for a store trace)."""

    label: str
    kind: str
    source: str
    share: float | None = None
    count: int | None = None
    at_s: float = 0.0
    request_class: str = "online"
    offline: bool = False
    priority: int | None = None
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    models: Popularity | None = None
    sha256: str = ""

    def __post_init__(self) -> None:
        name = f"component {self.label!r}"
        for f in ("share", "at_s", "slo_ttft_s", "slo_tpot_s"):  # 1 → 1.0: one JSON text
            v = getattr(self, f)
            if isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, f, float(v))
        if not self.label or not isinstance(self.label, str):
            raise ValueError("component: give every component a label")
        if self.kind not in KINDS:
            raise ValueError(f"{name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.source:
            raise ValueError(f"{name}: give its source (model JSON, trace .parquet or id)")
        if self.kind == "model" and not self.source.endswith(".json"):
            raise ValueError(f"{name}: a model component's source is a model .json "
                             f"(servetrace fit), got {self.source!r}")
        if self.kind in ("replay", "resample") and self.source.endswith(".json"):
            raise ValueError(f"{name}: kind {self.kind} takes a trace (.parquet or store "
                             f"id), not a model JSON")
        if self.share is not None:
            _number(self.share, f"{name}: share", positive=True)
        if self.count is not None:
            if self.kind != "batch":
                raise ValueError(f"{name}: count applies to batch components only")
            if not (isinstance(self.count, int) and not isinstance(self.count, bool)
                    and self.count >= 1):
                raise ValueError(f"{name}: count must be a positive integer, got {self.count!r}")
            if self.share is not None:
                raise ValueError(f"{name}: give a batch a share or a count, not both")
        _number(self.at_s, f"{name}: at_s", minimum=0.0)
        if self.at_s and self.kind != "batch":
            raise ValueError(f"{name}: at_s applies to batch components only")
        if self.priority is not None and not (isinstance(self.priority, int)
                                              and not isinstance(self.priority, bool)
                                              and self.priority >= 0):
            raise ValueError(f"{name}: priority must be a non-negative integer (0 the most "
                             f"urgent), got {self.priority!r}")
        for f in ("slo_ttft_s", "slo_tpot_s"):
            if getattr(self, f) is not None:
                _number(getattr(self, f), f"{name}: {f}", positive=True)
        if not self.request_class:
            raise ValueError(f"{name}: request_class cannot be empty")


def component(label: str, source: str, kind: str | None = None, **fields: object) -> Component:
    """A :class:`Component` with the defaults of its kind: ``model`` for a ``.json`` source,
    ``replay`` for a trace; a batch's class ``offline`` and ``offline`` True, others'
    ``online``."""
    kind = kind or ("model" if str(source).endswith(".json") else "replay")
    cls = fields.pop("request_class", None) or ("offline" if kind == "batch" else "online")
    offline = fields.pop("offline", None)
    if offline is None:
        offline = kind == "batch" or cls == "offline"
    return Component(label, kind, str(source), request_class=str(cls), offline=bool(offline),
                     **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Mix:
    """A workload mix (module docstring): components, envelopes, what shares divide
    (``by``), an optional total ``rate`` (requests or tokens per second) and a ``name``."""

    components: tuple[Component, ...]
    envelopes: tuple[Envelope, ...] = ()
    by: str = "requests"
    rate: float | None = None
    name: str = "mix"
    version: str = VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "envelopes", tuple(self.envelopes))
        if isinstance(self.rate, int) and not isinstance(self.rate, bool):
            object.__setattr__(self, "rate", float(self.rate))
        if not self.components:
            raise ValueError("mix: give at least one component")
        labels = [c.label for c in self.components]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"mix: component labels must be distinct; repeated: {', '.join(dup)}")
        if self.by not in BY:
            raise ValueError(f"mix: by must be one of {', '.join(BY)}, got {self.by!r}")
        if self.rate is not None:
            _number(self.rate, "mix: rate", positive=True)
        shares = [c.share is not None for c in self.components]
        if any(shares) and not all(shares):
            missing = [c.label for c in self.components if c.share is None]
            raise ValueError(f"mix: give every component a share or none; no share: "
                             f"{', '.join(missing)}")
        if any(shares):
            total = sum(c.share for c in self.components if c.share is not None)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"mix: shares must sum to 1, they sum to {total:g}")
        for c in self.components:
            if c.kind == "batch" and c.share is None and c.count is None \
                    and c.source.endswith(".json"):
                raise ValueError(f"component {c.label!r}: a batch of a model's lengths needs "
                                 "a count or a share")
        arrivals = [c for c in self.components if c.kind != "batch"]
        if any(shares) and self.rate is None and not arrivals:
            raise ValueError("mix: a mix of batches alone sized by shares needs a rate")
        known = set(labels)
        for e in self.envelopes:
            unknown = [x for x in e.components if x not in known]
            if unknown:
                raise ValueError(f"envelope {e.label or e.kind}: no component labelled "
                                 f"{', '.join(unknown)}")
            batch = [x for x in e.components
                     if next(c for c in self.components if c.label == x).kind == "batch"]
            if batch:
                raise ValueError(f"envelope {e.label or e.kind}: {', '.join(batch)} is a "
                                 "batch (no arrival process to modulate)")

    def envelopes_of(self, c: Component) -> tuple[Envelope, ...]:
        """The envelopes acting on component ``c`` (none on a batch)."""
        if c.kind == "batch":
            return ()
        return tuple(e for e in self.envelopes if applies(e, c.label))

    def sample(self, duration_s: float, seed: int, rate_scale: float = 1.0, *,
               base: str | Path | None = None, store: str | Path | None = None
               ) -> pl.DataFrame:
        """A canonical ``requests`` table over ``[0, duration_s)`` (module docstring);
        deterministic in ``seed``. ``rate_scale`` multiplies every component's requests
        (batches included); ``base``: the folder relative sources are read from (the mix
        file's); ``store``: the store root for sources that are trace ids."""
        from servetrace.synth.mix_sample import sample

        return sample(self, duration_s, seed, rate_scale, base=base, store=store).requests

    def to_json(self) -> str:
        """The mix as JSON text (plain objects tagged with their type)."""
        return json.dumps(_to_plain(self), allow_nan=False, indent=1) + "\n"

    @staticmethod
    def from_json(text: str) -> Mix:
        """The mix of :meth:`to_json` text; errors say what is wrong."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {exc.lineno} column {exc.colno}: not JSON ({exc.msg})"
                             ) from None
        if not isinstance(data, dict) or data.get("type") != "Mix":
            raise ValueError("not a servetrace Mix document")
        if data.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"mix version {data.get('version')!r} is not one of the "
                             f"supported versions {', '.join(READABLE_VERSIONS)}")
        mix = _from_plain(data)
        assert isinstance(mix, Mix)
        return mix

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path``."""
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @staticmethod
    def load(path: str | Path) -> Mix:
        """Read a mix written by :meth:`save`; errors name the file."""
        path = Path(path)
        try:
            return Mix.from_json(path.read_text())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None


_TYPES: dict[str, type] = {c.__name__: c for c in (Mix, Component, Envelope, Popularity)}


def _to_plain(obj: object) -> object:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, object] = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = _to_plain(getattr(obj, f.name))
        return out
    if isinstance(obj, tuple | list):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _from_plain(data: object) -> object:
    if isinstance(data, dict):
        cls = _TYPES.get(str(data.get("type")))
        if cls is None:
            raise ValueError(f"unknown object type {data.get('type')!r}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"type"})
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        kwargs = {k: _coerce(_from_plain(v), hints[k]) for k, v in data.items() if k != "type"}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"{cls.__name__}: {exc}") from None
    if isinstance(data, list):
        return tuple(_from_plain(v) for v in data)
    return data


def _coerce(value: object, hint: object) -> object:
    """JSON integers back to the annotated floats (``3`` for a height of 3.0)."""
    if isinstance(value, bool) or not isinstance(value, int | tuple):
        return value
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union,
                                                                 types.UnionType) else (hint,)
    if float in args and int not in args and isinstance(value, int):
        return float(value)
    for a in args:
        if typing.get_origin(a) is tuple and isinstance(value, tuple):
            inner = typing.get_args(a)
            if len(inner) == 2 and inner[1] is Ellipsis and inner[0] is float:
                return tuple(float(v) if isinstance(v, int) and not isinstance(v, bool)
                             else v for v in value)
    return value


@dataclass(frozen=True)
class Natural:
    """What a component offers at rate factor 1 over a sample: ``requests`` expected (a
    batch: 1, its factor being its count), ``tokens`` per request (input + output) and, for
    a batch of a trace's rows, their number ``rows`` (its count when it is given none)."""

    requests: float
    tokens: float
    rows: int | None = None


def solve(mix: Mix, natural: list[Natural], duration_s: float, rate_scale: float = 1.0
          ) -> list[float]:
    """Rate factors (a batch: its count, before rounding) that meet the mix's shares.

    With w_i the natural requests (× tokens per request when ``by`` is tokens) and T the
    total — ``rate`` × duration when the mix has a rate, else w_a / s_a for the first
    component a with arrivals (it keeps factor 1) — the factor is f_i = s_i·T / w_i, so the
    expected requests (tokens) of component i are s_i·T. Without shares every factor is 1
    (a batch: its count, or all its trace's rows), all scaled by rate·D / Σ w_i f_i when the
    mix has a rate. ``rate_scale`` multiplies them all.
    """
    tokens = mix.by == "tokens"
    w = [n.requests * (n.tokens if tokens else 1.0) for n in natural]
    for c, wi in zip(mix.components, w, strict=True):
        if not wi > 0:
            raise ValueError(f"component {c.label!r}: it offers no "
                             f"{'tokens' if tokens else 'requests'} over the sample (an "
                             "envelope of zero, or an empty source)")
    if mix.components[0].share is not None:
        if mix.rate is not None:
            total = mix.rate * duration_s
        else:
            a = next(i for i, c in enumerate(mix.components) if c.kind != "batch")
            total = w[a] / float(mix.components[a].share)  # type: ignore[arg-type]
        f = [float(c.share) * total / wi  # type: ignore[arg-type]
             for c, wi in zip(mix.components, w, strict=True)]
    else:
        f = []
        for c, n in zip(mix.components, natural, strict=True):
            if c.kind != "batch":
                f.append(1.0)
            elif c.count is not None or n.rows is None:
                f.append(float(c.count or 0))
            else:
                f.append(float(n.rows))
        if mix.rate is not None:
            offered = sum(fi * wi for fi, wi in zip(f, w, strict=True))
            f = [fi * mix.rate * duration_s / offered for fi in f]
    return [fi * rate_scale for fi in f]
